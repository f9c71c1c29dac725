"""The review page: a small local web app to accept, reject or correct flagged samples one by one.

Decisions are written as they are made to ``reviewed.csv`` (``id,decision`` where decision is
``accept``, ``reject`` or a class name), which ``trainyard repair --reviewed`` reads.

Safety: the server binds to loopback only, serves no files from disk except the run's own
``report.html`` (thumbnails are rendered in memory), refuses any path that tries to climb out
(``..`` however percent-encoded), requests with a foreign ``Host`` (DNS rebinding) and
cross-site POSTs (JSON only, same-origin only).
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd

from ..errors import ConfigError, RunError
from ..run import REPORT_HTML, atomic_write
from .evidence import Evidence
from .flagged import flagged_samples, reasons
from .run_files import REVIEWED_CSV, load_run_files

try:  # POSIX: also lock against a second server (or repair) on the same run
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
FIXED_DECISIONS = ("accept", "reject")
MAX_REVIEW = 2000
# validation rows are listed whole up to this many (a reviewed validation split is what repair chooses
# with; see ``_unflagged_validation``)
MAX_VALIDATION = 5000


# ------------------------------------------------------------------------------ decisions
def _parse_decisions(text: str) -> dict[str, str]:
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header or [h.strip().lower() for h in header[:2]] != ["id", "decision"]:
        return {}
    return {r[0]: r[1] for r in rows if len(r) >= 2 and r[1] != ""}


def read_decisions(run_dir: str | os.PathLike) -> dict[str, str]:
    """``{id: decision}`` from the run's reviewed.csv (empty if nobody reviewed yet)."""
    p = Path(run_dir) / REVIEWED_CSV
    try:
        return _parse_decisions(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


class DecisionStore:
    """reviewed.csv with read-modify-write under a lock, each write atomic."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / REVIEWED_CSV
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            if fcntl is None:
                yield
                return
            # flock on the run folder itself: no lock file left behind in the run
            fd = os.open(self.run_dir, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def read(self) -> dict[str, str]:
        return read_decisions(self.run_dir)

    def set(self, sample_id: str, decision: str | None) -> dict[str, str]:
        """Record (or, with None, clear) one decision; returns all decisions."""
        with self._locked():
            decisions = self.read()
            if decision is None:
                decisions.pop(sample_id, None)
            else:
                decisions[sample_id] = decision
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["id", "decision"])
            w.writerows(decisions.items())
            atomic_write(self.path, buf.getvalue())
            return decisions


# ------------------------------------------------------------------------------ safety
def _climbs_out(raw_target: str) -> bool:
    """True if the request target contains a ``..`` segment, a backslash or a NUL at any level
    of percent-decoding (double-encoded ``%252e%252e%252f`` included)."""
    path = urlsplit(raw_target).path
    for _ in range(4):
        parts = path.replace("\\", "/").split("/")
        if ".." in parts or "\x00" in path or "\\" in path:
            return True
        decoded = unquote(path)
        if decoded == path:
            return False
        path = decoded
    return True  # still encoded after four rounds: nobody legitimate does that


def _host_ok(host_header: str) -> bool:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8765
        host = host[1:host.find("]")]
    elif host.count(":") == 1:
        host = host.split(":")[0]
    return host in LOOPBACK_HOSTS


# ------------------------------------------------------------------------------ the app
def _unflagged_validation(samples, flagged_all):
    """Validation rows that are not flagged, most suspicious label first, shaped like ``flagged_samples``."""
    if "split" not in samples:
        return flagged_all.head(0)
    mask = (samples["split"].astype(str) == "val").to_numpy().copy()
    mask[flagged_all["position"].to_numpy(int)] = False
    out = samples.loc[mask].copy()
    out["position"] = np.flatnonzero(mask)
    out["severity"] = 0.0
    out["issues"] = [[] for _ in range(len(out))]
    out["_order"] = out["label_score"].fillna(0) if "label_score" in out else 0.0
    return out.sort_values(["_order", "position"], ascending=[False, True], kind="stable").drop(columns="_order")


def _sample_records(flagged, ev: Evidence, flagged_rows: bool = True) -> list[dict]:
    """What the page shows of each sample (built once: the data does not change). ``flagged_rows``:
    False for the unflagged validation rows (no issue; the page lists them under its validation filter)."""
    out = []
    for _, r in flagged.iterrows():
        pos = int(r["position"])
        view = ev.view(pos, inline_thumb=False)
        twin = ev.position_of(r["duplicate_of"]) if flagged_rows and r["duplicate"] else None
        why = reasons(r) if flagged_rows else ["validation row, not flagged: repair compares its rounds on this label"]
        extra = ev.model_evidence(r["id"])
        out.append({
            "pos": pos, "id": r["id"], "given": r["given_label"], "suggested": r["suggested_label"],
            "issues": r["issues"], "reasons": why + ([extra] if extra else []),
            "severity": round(float(r["severity"]), 4),
            # validation rows are what repair chooses its rounds with: the page can list them alone
            "split": str(r["split"]) if "split" in r and isinstance(r["split"], str) else "",
            "flagged": flagged_rows,
            "features": view.features, "text": view.text, "has_thumb": ev.has_images(),
            "twin": None if twin is None else {"pos": twin, "id": r["duplicate_of"],
                                               "text": ev.text(twin), "features": ev.features(twin)},
        })
    return out


def create_review_app(run_dir: str | os.PathLike):
    """The Flask app of the review page for ``run_dir`` (which must have samples.csv)."""
    from flask import Flask, Response, abort, jsonify, request

    from .html_report import environment

    rf = load_run_files(run_dir)
    if rf.samples is None:
        raise RunError(f"{rf.path}: no samples.csv to review; run `trainyard diagnose` on this run first")
    flagged_all = flagged_samples(rf.samples)
    # nobody reviews tens of thousands one by one: the page lists the worst MAX_REVIEW
    flagged = flagged_all.head(MAX_REVIEW)
    # the validation rows no detector flagged, listed after the flagged ones and shown only under the
    # page's "validation rows" filter: repair chooses its rounds on the validation labels, and a fully
    # reviewed validation split is what lifts it where the noise follows the features (B2, BENCHMARKS.md);
    # flagged validation rows past the cap are listed too, so the filter shows the whole split
    val_room = MAX_VALIDATION
    if "split" in flagged_all:
        late = flagged_all.iloc[MAX_REVIEW:]
        flagged = pd.concat([flagged, late[late["split"].astype(str) == "val"]])
        val_room -= int((flagged["split"].astype(str) == "val").sum())
    unflagged_val = _unflagged_validation(rf.samples, flagged_all).head(max(val_room, 0))
    ev = Evidence(rf)
    classes = rf.classes
    store = DecisionStore(rf.path)
    known_ids = set(rf.samples["id"])
    servable = set(int(p) for p in flagged["position"]) | set(int(p) for p in unflagged_val["position"])
    for dup in flagged.loc[flagged["duplicate"], "duplicate_of"]:
        pos = ev.position_of(dup)
        if pos is not None:
            servable.add(pos)

    # static_folder=None: Flask must not serve the package's static/ folder (nor anything else)
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.config["TRAINYARD_RUN"] = str(rf.path)

    records = _sample_records(flagged, ev) + _sample_records(unflagged_val, ev, flagged_rows=False)

    @lru_cache(maxsize=4096)
    def thumb(pos: int) -> bytes | None:
        return ev.thumbnail_png(pos)

    @app.before_request
    def guard():
        raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.path
        if _climbs_out(raw) or _climbs_out(request.path):
            abort(403)
        if not _host_ok(request.host):
            abort(403)
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin and not _host_ok(urlsplit(origin).netloc):
                abort(403)

    @app.after_request
    def headers(resp):
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(403)
    def forbidden(_):
        return jsonify(error="forbidden"), 403

    @app.errorhandler(404)
    def not_found(_):
        return jsonify(error="not found"), 404

    @app.get("/")
    def page():
        html = environment().get_template("review.html").render(
            name=rf.path.resolve().name, classes=classes, n_flagged=len(flagged_all), n_listed=len(flagged),
            has_report=(rf.path / REPORT_HTML).is_file())
        return Response(html, mimetype="text/html")

    @app.get("/api/samples")
    def samples():
        decisions = store.read()  # read fresh: another tab, or a restart, may have written it
        samples = [{**r, "decision": decisions.get(r["id"])} for r in records]
        return jsonify(run=rf.path.resolve().name, classes=classes, decisions_file=REVIEWED_CSV,
                       samples=samples, reviewed=len(decisions), n_flagged=len(flagged_all))

    @app.get("/api/thumb/<int:pos>.png")
    def thumbnail(pos: int):
        if pos not in servable:
            abort(404)
        png = thumb(pos)
        if png is None:
            abort(404)
        return Response(png, mimetype="image/png")

    @app.post("/api/decision")
    def decide():
        body = request.get_json(silent=True)  # JSON only: a cross-site form cannot send it
        if not request.is_json or not isinstance(body, dict):
            return jsonify(error="send JSON {id, decision}"), 415
        sample_id = str(body.get("id", ""))
        decision = body.get("decision")
        if sample_id not in known_ids:
            return jsonify(error=f"unknown sample id {sample_id!r}"), 400
        if decision in ("", None):
            decision = None
        elif decision not in FIXED_DECISIONS and decision not in classes:
            return jsonify(error=f"decision must be accept, reject or a class name, got {decision!r}"), 400
        decisions = store.set(sample_id, decision)
        return jsonify(id=sample_id, decision=decision, reviewed=len(decisions))

    @app.get("/report.html")
    def report():
        p = rf.path / REPORT_HTML  # a fixed name: no path from the request touches the disk
        if not p.is_file():
            abort(404)
        return Response(p.read_bytes(), mimetype="text/html")

    return app


def _check_host(host: str) -> None:
    if host not in LOOPBACK_HOSTS:
        raise ConfigError(f"review: host {host!r} is not allowed; the review page only listens on "
                          "127.0.0.1 (it can change your labels), use an SSH tunnel to reach it remotely")


def make_review_server(run_dir: str | os.PathLike, port: int = 8765, host: str = "127.0.0.1"):
    """A threaded werkzeug server for the review page (``port=0`` picks a free port, see
    ``server.server_port``); call ``serve_forever()`` and, from another thread, ``shutdown()``."""
    from werkzeug.serving import make_server

    _check_host(host)
    app = create_review_app(run_dir)
    try:
        return make_server(host, port, app, threaded=True)
    except OSError as e:
        raise ConfigError(f"review: cannot listen on {host}:{port} ({e.strerror}); pass another --port") from None


def serve_review(run_dir: str | os.PathLike, port: int = 8765, host: str = "127.0.0.1") -> None:
    """Serve the review page of ``run_dir`` on http://127.0.0.1:PORT/ until Ctrl-C."""
    server = make_review_server(run_dir, port, host)
    url_host = f"[{host}]" if ":" in host else host
    print(f"Reviewing {Path(run_dir)}: open http://{url_host}:{server.server_port}/  "
          f"(decisions go to {Path(run_dir) / REVIEWED_CSV}; Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
