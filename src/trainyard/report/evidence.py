"""What a person needs to see to judge a sample: a thumbnail, the deciding feature values, or the text.

Thumbnails are rendered in memory from the run's ``data.npz`` (never read from paths found in the
data), so the report stays one self-contained file and the review page serves no files.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .run_files import RunFiles, load_data_arrays, load_raw_table

TOP_FEATURES = 5
TEXT_CHARS = 600
THUMB_MIN, THUMB_MAX = 64, 128  # pixels of the longest side


def image_to_png(img: np.ndarray) -> bytes:
    """PNG bytes of one image ``(C, H, W)`` or ``(H, W)`` with values in 0..1.

    Tiny images (8×8 digits) are enlarged with nearest-neighbour so pixels stay crisp.
    """
    from PIL import Image

    a = np.asarray(img, dtype=np.float32)
    if a.ndim == 3:
        a = a[0] if a.shape[0] not in (3, 4) else np.moveaxis(a, 0, -1)
    a = np.nan_to_num(a)
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > 1:  # not in 0..1 as promised: stretch rather than clip everything away
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    im = Image.fromarray(np.round(a * 255).astype(np.uint8))
    side = max(im.size)
    if side < THUMB_MIN:
        k = -(-THUMB_MIN // side)
        im = im.resize((im.size[0] * k, im.size[1] * k), Image.NEAREST)
    elif side > THUMB_MAX:
        s = THUMB_MAX / side
        im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def feature_importance(explain: Any) -> tuple[list[tuple[str, float]], str | None]:
    """(feature, importance) pairs, most important first, and the method's name, from explain.json.

    Reads trainyard's explain.json (``shap.mean_abs`` when SHAP ran, else
    ``permutation.importance_mean``: the accuracy lost when the feature is shuffled) and also
    the simpler shapes ``{"importance": {name: value}}``, ``{name: value}`` or a list of
    ``{"feature", "importance"}`` records.
    """
    if not explain:
        return [], None
    raw: list[tuple[Any, Any]] = []
    method = None
    if isinstance(explain, dict):
        for key, values_key, name in (("shap", "mean_abs", "mean |SHAP value|"),
                                      ("permutation", "importance_mean", "permutation importance (accuracy lost)")):
            block = explain.get(key)
            if isinstance(block, dict) and isinstance(block.get("features"), list) and \
                    isinstance(block.get(values_key), list):
                raw, method = list(zip(block["features"], block[values_key])), name
                break
        if not raw:
            imp = explain.get("importance", explain.get("feature_importance", explain))
            if isinstance(imp, dict) and "features" in imp and "values" in imp:
                imp = dict(zip(imp["features"], imp["values"]))
            if isinstance(imp, dict):
                raw = list(imp.items())
            elif isinstance(imp, list):
                explain = imp
            method = explain.get("method") if isinstance(explain, dict) else None
    if isinstance(explain, list):
        raw = [(d.get("feature", d.get("name")), d.get("importance", d.get("value", d.get("score"))))
               for d in explain if isinstance(d, dict)]
    pairs = []
    for name, val in raw:
        try:
            v = float(val)
        except (TypeError, ValueError):
            continue  # nested or non-numeric entries are not global importances
        if np.isfinite(v):
            pairs.append((str(name), v))
    return sorted(pairs, key=lambda kv: -kv[1]), method


def flagged_explanations(explain: Any) -> dict[str, dict]:
    """explain.json's per-sample "why flagged" records (``flagged``), by sample id."""
    recs = explain.get("flagged") if isinstance(explain, dict) else None
    if isinstance(recs, dict):
        recs = recs.get("samples", recs.get("rows"))
    return {str(r["id"]): r for r in recs or [] if isinstance(r, dict) and "id" in r}


def _data_setting(rf: RunFiles, key: str) -> str | None:
    """The run's ``target`` / ``text`` column (run.json's data block, else its config)."""
    for block in (rf.meta.get("data"), rf.meta.get("config")):
        if isinstance(block, dict) and isinstance(block.get(key), str):
            return block[key]
    return None


def _feature_names(rf: RunFiles, data: dict, width: int) -> list[str]:
    """Names of data.npz's columns: stored with it, in run.json, or rebuilt from encoder.json."""
    names: list[str] | None = None
    if "feature_names" in data:
        names = [str(n) for n in data["feature_names"]]
    elif rf.meta.get("feature_names"):
        names = [str(n) for n in rf.meta["feature_names"]]
    elif (rf.path / "encoder.json").is_file():
        try:
            import json

            from ..data.encoder import TableEncoder

            state = json.loads((rf.path / "encoder.json").read_text(encoding="utf-8"))
            names = list(TableEncoder.from_dict(state).feature_names_)
        except Exception:  # noqa: BLE001 - names are a nicety; fall back to x0, x1, ...
            names = None
    if not names or len(names) != width:
        names = [f"x{j}" for j in range(width)]
    return names


@dataclass
class SampleView:
    thumb: str | None = None  # data URI
    features: list[dict] | None = None  # [{name, value, z}]
    text: str | None = None


class Evidence:
    """Looks up how to show each row of samples.csv (by its position in the file)."""

    def __init__(self, rf: RunFiles):
        self.kind = rf.kind
        self.samples = rf.samples
        self._data = load_data_arrays(rf.path)
        self._raw = load_raw_table(rf.path)
        self._row_of: np.ndarray | None = None  # samples position -> data.npz row
        self._table: pd.DataFrame | None = None
        # numeric columns (float32) and their mean / std: a row's z-scores are computed when it is shown,
        # not held for every row (10^6 rows x 40 columns would be 320 MB of float64)
        self._numeric: np.ndarray | None = None
        self._z_mean: np.ndarray | None = None
        self._z_std: np.ndarray | None = None
        self._z_names: list[str] = []
        self._z_index: dict[str, int] = {}
        self._ids = self.samples["id"].to_numpy(dtype=object) if self.samples is not None else None
        self._position: dict[str, int] | None = None
        self._text: pd.Series | None = None
        self._importance = [n for n, _ in feature_importance(rf.explain)[0]]
        self._why = flagged_explanations(rf.explain)
        n = len(self.samples) if self.samples is not None else 0
        if self._data is not None and "X" in self._data:
            self._row_of = self._align(self._data, n)
        if self.kind == "text" or (self.samples is not None and "text" in self.samples):
            self._text = self._find_text(rf)
        if self._text is None and self.kind != "image":
            self._table = self._find_table(rf)
            if self._table is not None:
                num = self._table.apply(pd.to_numeric, errors="coerce")
                num = num.loc[:, num.notna().mean() > 0.9]
                values = num.to_numpy(dtype=np.float32)
                self._z_names = [str(c) for c in num.columns]
                del num
                std = np.nanstd(values, axis=0, dtype=np.float64)
                std[std == 0] = np.nan  # a constant column has no "unusual" value
                self._numeric, self._z_mean, self._z_std = values, np.nanmean(values, axis=0, dtype=np.float64), std
                self._z_index = {n: j for j, n in enumerate(self._z_names)}

    def _align(self, data: dict, n: int) -> np.ndarray | None:
        """Map samples.csv rows to data.npz rows by id, else by position when lengths agree."""
        if self.samples is None:
            return None
        if "ids" in data:
            ids = np.asarray(data["ids"]).astype(str)
            if len(ids) == n and np.array_equal(ids, self.samples["id"].to_numpy(dtype=str)):
                return np.arange(n)  # the usual case, without a dict of every id
            index = {str(v): i for i, v in enumerate(ids.tolist())}
            rows = np.array([index.get(i, -1) for i in self.samples["id"]], dtype=np.int64)
            if (rows >= 0).mean() > 0.5:
                return rows
        if len(data["X"]) == n:
            return np.arange(n)
        return None

    def _find_text(self, rf: RunFiles) -> pd.Series | None:
        if self.samples is not None and "text" in self.samples:
            return self.samples["text"].fillna("").astype(str).reset_index(drop=True)
        raw = self._raw
        if raw is None or self.samples is None or len(raw) != len(self.samples):
            return None
        col = _data_setting(rf, "text")
        if col not in raw:
            col = "text" if "text" in raw else None
        if col is None:
            obj = [c for c in raw.columns if raw[c].dtype == object]
            if not obj:
                return None
            col = max(obj, key=lambda c: raw[c].astype(str).str.len().mean())
        return raw[col].fillna("").astype(str).reset_index(drop=True)

    def _find_table(self, rf: RunFiles) -> pd.DataFrame | None:
        """The user's rows in their own units (raw.csv) if kept, else the encoded features."""
        n = len(self.samples) if self.samples is not None else -1
        if self._raw is not None and len(self._raw) == n:
            target = _data_setting(rf, "target")
            drop = [c for c in (target, "id") if c and c in self._raw]
            return self._raw.drop(columns=drop).reset_index(drop=True)
        if self._data is not None and self._row_of is not None and np.ndim(self._data["X"]) == 2:
            X = self._data["X"]
            names = _feature_names(rf, self._data, X.shape[1])
            rows = np.clip(self._row_of, 0, len(X) - 1)
            table = pd.DataFrame(X[rows], columns=list(names)[: X.shape[1]])
            table.loc[self._row_of < 0, :] = np.nan
            return table
        return None

    # ----------------------------------------------------------------------------------
    def thumbnail_png(self, position: int) -> bytes | None:
        """PNG of the image at samples.csv row ``position`` (None for non-image data)."""
        if self._data is None or self._row_of is None:
            return None
        X = self._data["X"]
        if X.ndim < 3 or not 0 <= position < len(self._row_of) or self._row_of[position] < 0:
            return None
        return image_to_png(X[self._row_of[position]])

    def features(self, position: int, k: int = TOP_FEATURES) -> list[dict] | None:
        """The deciding feature values of a tabular row: the features that pushed the model toward
        the suggested label (explain.json's per-sample attributions) when known, else the most
        important features overall, else those farthest from their column mean (largest |z|)."""
        if self._table is None or not 0 <= position < len(self._table):
            return None
        columns = list(self._table.columns)
        z_cols = self._z_index
        z_row = ((self._numeric[position] - self._z_mean) / self._z_std) if self._numeric is not None else np.zeros(0)
        why = self._why.get(str(self._ids[position])) if self._ids is not None else None
        attribution: dict[str, float] = {}
        if why and isinstance(why.get("top_features"), list):
            for f in why["top_features"]:
                if isinstance(f, dict) and f.get("feature") in columns:
                    attribution[f["feature"]] = f.get("attribution")
        names = list(attribution)[:k] or [n for n in self._importance if n in set(columns)][:k]
        if not names:
            mag = np.where(np.isfinite(z_row), np.abs(z_row), -1.0)
            order = np.argsort(-mag, kind="stable")[:k]
            names = [self._z_names[j] for j in order if mag[j] >= 0] or columns[:k]
        row = self._table.iloc[position]
        out = []
        for name in names:
            value = row[name]
            j = z_cols.get(name)
            zv = z_row[j] if j is not None else np.nan
            if isinstance(value, (float, np.floating)):
                value = f"{value:.4g}"
            out.append({"name": str(name), "value": str(value),
                        "z": None if not np.isfinite(zv) else round(float(zv), 2),
                        "attribution": attribution.get(name)})
        return out

    def model_evidence(self, sample_id: str) -> str | None:
        """One sentence from explain.json on what the model believes about a flagged sample."""
        why = self._why.get(str(sample_id))
        if not why or why.get("p_given") is None:
            return None
        text = f"the model gives '{why.get('given_label')}' p={float(why['p_given']):.2f}"
        if why.get("suggested_label") not in (None, why.get("given_label")) and why.get("p_suggested") is not None:
            text += f" and '{why['suggested_label']}' p={float(why['p_suggested']):.2f}"
        return text

    def text(self, position: int) -> str | None:
        if self._text is None or not 0 <= position < len(self._text):
            return None
        t = self._text.iloc[position]
        return t if len(t) <= TEXT_CHARS else t[: TEXT_CHARS - 1] + "…"

    def view(self, position: int, inline_thumb: bool = True) -> SampleView:
        """Everything to show for samples.csv row ``position``."""
        png = self.thumbnail_png(position) if inline_thumb else None
        return SampleView(thumb=png_data_uri(png) if png else None,
                          features=self.features(position), text=self.text(position))

    def has_images(self) -> bool:
        return self._data is not None and self._row_of is not None and np.ndim(self._data["X"]) >= 3

    def position_of(self, sample_id: str) -> int | None:
        """Row of samples.csv with this id (the first, if ids repeat)."""
        if self._ids is None:
            return None
        if self._position is None:
            self._position = {}
            for i, v in enumerate(self._ids):
                self._position.setdefault(str(v), i)
        return self._position.get(str(sample_id))
