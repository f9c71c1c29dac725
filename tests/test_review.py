"""The review page: API, decisions file, restart, path traversal, and clicks in a real browser."""
from __future__ import annotations

import csv
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from test_report import CHROMIUM, CHROMIUM_ARGS, EXPECTED, N_FLAGGED, browser_or_skip, dump_json, make_image_run
from trainyard.errors import ConfigError, RunError
from trainyard.report import create_review_app, make_review_server, read_decisions
from trainyard.report.flagged import flagged_samples
from trainyard.report.run_files import load_run_files
from trainyard.report.review import DecisionStore


@pytest.fixture()
def run(tmp_path) -> Path:
    path = make_image_run(tmp_path / "digits")
    # three flagged rows (an outlier, two ambiguous) are validation rows: the page can list them alone
    samples = pd.read_csv(path / "samples.csv", dtype={"id": str})
    samples.loc[samples["id"].isin(["img_020", "img_060", "img_061"]), "split"] = "val"
    samples.to_csv(path / "samples.csv", index=False)
    return path


@contextmanager
def serving(run_dir: Path):
    """The review server on a free loopback port, in a thread; shut down on exit."""
    server = make_review_server(run_dir, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """GET exactly ``target`` over a socket, so no client library normalises the path."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


def test_samples_api_lists_flagged_worst_first(run):
    client = create_review_app(run).test_client()
    body = client.get("/api/samples").get_json()
    listed = body["samples"]
    samples = [s for s in listed if s["flagged"]]
    assert len(samples) == N_FLAGGED
    # then every unflagged validation row (the fixture has 23 validation rows, 3 of them flagged)
    assert [s["flagged"] for s in listed] == [True] * N_FLAGGED + [False] * 20
    assert all(s["split"] == "val" and s["issues"] == [] for s in listed[N_FLAGGED:])
    # the most extreme outlier (score 9, top of 200 rows) ranks 1.0; label score 0.99 comes soon after
    assert samples[0]["id"] == "img_022"
    assert "img_005" in [s["id"] for s in samples[:3]]
    sev = [s["severity"] for s in samples]
    assert sev == sorted(sev, reverse=True)
    assert body["classes"] == [str(c) for c in range(10)]
    # each sample's split, so the page can list the validation rows repair chooses with
    split = dict(zip(*[pd.read_csv(run / "samples.csv")[c].astype(str) for c in ("id", "split")]))
    assert [s["split"] for s in samples] == [split[s["id"]] for s in samples]
    assert any(s["split"] == "val" for s in samples) and any(s["split"] == "train" for s in samples)
    by_id = {s["id"]: s for s in samples}
    assert set(by_id["img_003"]["issues"]) == {"label", "ambiguous"}
    assert by_id["img_040"]["twin"]["id"] == "img_041"
    assert all(s["decision"] is None for s in samples)
    # thumbnails come from memory, for flagged rows (and duplicates' twins) only
    png = client.get(f"/api/thumb/{by_id['img_040']['pos']}.png")
    assert png.status_code == 200 and png.data[:4] == b"\x89PNG"
    assert client.get(f"/api/thumb/{by_id['img_040']['twin']['pos']}.png").status_code == 200
    assert client.get("/api/thumb/150.png").status_code == 404  # not flagged


def test_every_validation_row_is_listed_past_the_cap(run, monkeypatch):
    """With room for only the 2 worst flagged rows, the 3 flagged validation rows are still listed (the
    validation filter must show the whole split), and the unflagged ones fill the validation cap."""
    import trainyard.report.review as review

    monkeypatch.setattr(review, "MAX_REVIEW", 2)
    monkeypatch.setattr(review, "MAX_VALIDATION", 10)
    listed = create_review_app(run).test_client().get("/api/samples").get_json()["samples"]
    flagged = [s for s in listed if s["flagged"]]
    assert [s["split"] for s in flagged[:2]] == ["train", "train"]  # the two worst
    assert sorted(s["id"] for s in flagged[2:]) == ["img_020", "img_060", "img_061"]
    assert sum(s["split"] == "val" for s in listed) == 10 and len(listed) - len(flagged) == 7


def test_decisions_are_validated_saved_and_cleared(run):
    client = create_review_app(run).test_client()
    assert client.post("/api/decision", json={"id": "img_005", "decision": "accept"}).status_code == 200
    assert client.post("/api/decision", json={"id": "img_006", "decision": "7"}).status_code == 200
    assert client.post("/api/decision", json={"id": "img_007", "decision": "reject"}).status_code == 200
    assert client.post("/api/decision", json={"id": "nope", "decision": "accept"}).status_code == 400
    assert client.post("/api/decision", json={"id": "img_005", "decision": "cat"}).status_code == 400
    # not JSON (what a cross-site form could send), or from another origin: refused
    assert client.post("/api/decision", data="id=img_005&decision=reject",
                       content_type="application/x-www-form-urlencoded").status_code == 415
    assert client.post("/api/decision", json={"id": "img_005", "decision": "reject"},
                       headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.get("/api/samples", headers={"Host": "evil.example:8765"}).status_code == 403
    assert read_decisions(run) == {"img_005": "accept", "img_006": "7", "img_007": "reject"}
    assert client.post("/api/decision", json={"id": "img_007", "decision": None}).status_code == 200
    lines = (run / "reviewed.csv").read_text().splitlines()
    assert lines == ["id,decision", "img_005,accept", "img_006,7"]
    # a new app (a restarted server) sees them
    samples = create_review_app(run).test_client().get("/api/samples").get_json()["samples"]
    assert {s["id"]: s["decision"] for s in samples if s["decision"]} == {"img_005": "accept", "img_006": "7"}


def test_concurrent_decisions_are_not_lost(run):
    store = DecisionStore(run)
    ids = [f"img_{i:03d}" for i in range(40)]
    threads = [threading.Thread(target=store.set, args=(i, "reject")) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert read_decisions(run) == {i: "reject" for i in ids}


def test_only_loopback_and_a_real_run(run, tmp_path):
    with pytest.raises(ConfigError, match="only listens on 127.0.0.1"):
        make_review_server(run, port=0, host="0.0.0.0")
    (tmp_path / "fit_only").mkdir()
    (tmp_path / "fit_only" / "run.json").write_text("{}")
    with pytest.raises(RunError, match="no samples.csv"):
        create_review_app(tmp_path / "fit_only")


def test_path_traversal_is_refused(run):
    secret = b"abababababab"  # the fingerprint in run.json
    (run.parent / "outside.txt").write_text("outside secret")
    with serving(run) as (_, port):
        assert raw_get(port, "/api/samples")[0] == 200
        for target in ("/../run.json", "/%2e%2e/run.json", "/%2E%2E%2Frun.json", "/static/..%2f..%2frun.json",
                       "/static/%252e%252e%252f%252e%252e%252frun.json", "/%252e%252e/outside.txt",
                       "/api/thumb/..%2f..%2frun.json", "/..%5c..%5crun.json", "/run.json", "/samples.csv",
                       "/static/style.css", "/report.html/../run.json", "//etc/passwd"):
            status, data = raw_get(port, target)
            assert status in (400, 403, 404), (target, status)
            assert secret not in data and b"outside secret" not in data and b"root:" not in data, target


def test_review_in_chromium_and_after_restart(run, tmp_path):
    sync_playwright = browser_or_skip()
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            with serving(run) as (url, _):
                page.goto(url + "/")
                page.wait_for_selector("body[data-ready='1']")
                cards = page.locator("article.rv")
                assert page.locator("article.rv:visible").count() == N_FLAGGED  # unflagged validation rows hidden
                first = cards.nth(0).get_attribute("data-id")
                second = cards.nth(1).get_attribute("data-id")
                third = cards.nth(2).get_attribute("data-id")
                cards.nth(0).locator("button.accept").click()
                page.wait_for_selector("article.rv[data-index='0'][data-decision='accept']")
                cards.nth(1).locator("select.label-pick").select_option("7")
                cards.nth(1).locator("button.relabel").click()
                page.wait_for_selector("article.rv[data-index='1'][data-decision='7']")
                # the keyboard: focus moved on to the third card; "r" rejects it, "k" goes back, "u" undoes
                page.keyboard.press("r")
                page.wait_for_selector("article.rv[data-index='2'][data-decision='reject']")
                page.keyboard.press("k")
                page.keyboard.press("3")
                page.wait_for_selector("article.rv[data-index='2'][data-decision='3']")
                page.screenshot(path=str(tmp_path / "review.png"))
                page.goto("about:blank")  # leave before the server stops: no thumbnail request may hit a dead port
            assert read_decisions(run) == {first: "accept", second: "7", third: "3"}
            # a restarted server (a new app on a new port) shows the decisions made before
            with serving(run) as (url, _):
                page.goto(url + "/")
                page.wait_for_selector("body[data-ready='1']")
                assert page.locator(f"article.rv[data-id='{first}'] .status").inner_text() == "accepted"
                assert page.locator(f"article.rv[data-id='{second}'] .status").inner_text() == "relabelled → 7"
                assert page.locator("#progress").inner_text() == (f"3 of {N_FLAGGED} flagged samples reviewed"
                                                                  " · 0 of 23 validation rows")
                assert page.locator("article.rv.current").get_attribute("data-index") == "3"
                page.select_option("#issue-filter", "label")
                assert page.locator("article.rv:visible").count() == EXPECTED["label"]
                page.select_option("#issue-filter", "val")  # every validation row, flagged or not
                n_val = int((flagged_samples(load_run_files(run).samples)["split"] == "val").sum())
                assert n_val == 3 and page.locator("article.rv:visible").count() == 23
                assert page.locator("article.rv.unflagged:visible").count() == 20
                page.goto("about:blank")
        finally:
            browser.close()
    assert errors == []
    with open(run / "reviewed.csv", newline="") as f:
        assert list(csv.reader(f)) == [["id", "decision"], [first, "accept"], [second, "7"], [third, "3"]]
    shot = tmp_path / "review.png"
    assert shot.stat().st_size > 20_000


def test_text_and_tabular_rows_reach_the_page(tmp_path):
    run = tmp_path / "txt"
    run.mkdir()
    pd.DataFrame({"id": ["r0", "r1", "r2"], "given_label": ["pos", "pos", "neg"], "label_issue": [False, True, False],
                  "label_score": [0.1, 0.9, 0.2], "suggested_label": ["pos", "neg", "neg"],
                  "outlier": [False, False, True], "outlier_score": [0.0, 0.1, 7.0], "duplicate_of": "",
                  "ambiguous": False, "issue": ["", "label", "outlier"]}).to_csv(run / "samples.csv", index=False)
    pd.DataFrame({"review": ["fine", "<b>awful</b> film", "??"], "stars": [4, 1, 3],
                  "sentiment": ["pos", "pos", "neg"]}).to_csv(run / "raw.csv", index=False)
    dump_json({"status": "finished", "classes": ["neg", "pos"],
               "data": {"kind": "text", "target": "sentiment", "text": "review"}}, run / "run.json")
    body = create_review_app(run).test_client().get("/api/samples").get_json()
    assert [s["id"] for s in body["samples"]] == ["r2", "r1"]  # top outlier (rank 1.0) then label 0.9
    assert body["samples"][1]["text"] == "<b>awful</b> film"  # raw: the page sets it as textContent
    assert body["samples"][0]["has_thumb"] is False
    assert body["classes"] == ["neg", "pos"]
