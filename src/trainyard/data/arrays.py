"""``.npz`` files with arrays ``X`` and ``y`` (optional ``ids``, ``classes``, ``feature_names``).

``X`` with 2 dims is a table (encoded by TableEncoder); with 3 dims ``(N, H, W)`` or 4 dims
``(N, C, H, W)`` / ``(N, H, W, C)`` it is images, returned as N x C x H x W float32 in 0..1.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, RunError
from .file_checks import require_file
from .labels import describe_rows, short_list, to_strings
from .rawdata import RawData

_CHANNELS = (1, 3, 4)


class ImageArrayEncoder:
    """Image arrays (any layout, any numeric dtype) -> N x C x H x W float32 in 0..1.

    The scale is learned from the training array: uint8 (or integers up to 255) / 255, floats
    already in 0..1 as they are, other ranges min-max scaled. ``scale`` fixes the divisor
    (``sklearn:digits`` pixels are 0..16).
    """

    type_name = "image_array"

    def __init__(self, scale: float | None = None, offset: float = 0.0) -> None:
        self.scale = scale
        self.offset = float(offset)
        self.layout_: str | None = None
        self.shape_: tuple[int, int, int] | None = None

    def fit(self, X: np.ndarray, source: str = "data") -> "ImageArrayEncoder":
        """Learn layout, shape and (unless fixed) pixel scale from ``X``."""
        self.layout_ = _layout(X.shape, source)
        self.shape_ = _chw(X.shape, self.layout_)
        if self.scale is None:
            self.scale, self.offset = _pixel_scale(X)
        return self

    def transform(self, X: np.ndarray, info: dict[str, Any] | None = None, source: str = "new data") -> np.ndarray:
        """Images -> float32 N x C x H x W clipped to 0..1; NaN/inf pixels become 0 and are counted."""
        if self.layout_ is None:
            raise RunError("ImageArrayEncoder.transform called before fit")
        X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise DataError(f"{source}: image array has dtype {X.dtype}; expected numbers")
        if X.ndim == len(self.layout_) - 1:  # one image
            X = X[None]
        if X.ndim != len(self.layout_) or _chw(X.shape, self.layout_) != self.shape_:
            raise DataError(f"{source}: images of shape {X.shape[1:]} do not match the training images "
                            f"({self.layout_} with C,H,W = {self.shape_})")
        if self.layout_ == "NHW":
            X = X[:, None]
        elif self.layout_ == "NHWC":
            X = X.transpose(0, 3, 1, 2)
        out = np.ascontiguousarray(X, dtype=np.float32)
        if self.offset:
            out -= np.float32(self.offset)
        if self.scale != 1:
            out /= np.float32(self.scale)
        bad = ~np.isfinite(out)
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            out[bad] = 0.0
        np.clip(out, 0.0, 1.0, out=out)
        if info is not None:
            info["missing"] = {"X": n_bad} if n_bad else {}
            info["missing_total"] = n_bad
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {"type": self.type_name, "version": 1, "scale": float(self.scale or 1.0), "offset": self.offset,
                "layout": self.layout_, "shape": list(self.shape_) if self.shape_ else None}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "ImageArrayEncoder":
        """Rebuild from :meth:`to_dict` output."""
        if not isinstance(state, dict) or state.get("type") != cls.type_name:
            raise RunError("not an image_array encoder state")
        enc = cls(state["scale"], state.get("offset", 0.0))
        enc.layout_ = state["layout"]
        enc.shape_ = tuple(state["shape"])
        return enc


def _layout(shape: tuple[int, ...], source: str) -> str:
    if len(shape) == 3:
        return "NHW"
    if len(shape) != 4:
        raise DataError(f"{source}: X has {len(shape)} dims {shape}; expected (N, D), (N, H, W), "
                        "(N, C, H, W) or (N, H, W, C)")
    first, last = shape[1], shape[3]
    if last in _CHANNELS and first not in _CHANNELS:
        return "NHWC"
    if first in _CHANNELS or first <= last:
        return "NCHW"
    return "NHWC"


def _chw(shape: tuple[int, ...], layout: str) -> tuple[int, int, int]:
    if layout == "NHW":
        return (1, int(shape[1]), int(shape[2]))
    if layout == "NHWC":
        return (int(shape[3]), int(shape[1]), int(shape[2]))
    return (int(shape[1]), int(shape[2]), int(shape[3]))


def _pixel_scale(X: np.ndarray) -> tuple[float, float]:
    """(divisor, offset) that maps the training pixels into 0..1."""
    if X.dtype == np.uint8 or X.dtype.kind == "b" or X.size == 0:
        return (255.0 if X.dtype == np.uint8 else 1.0), 0.0
    finite = X[np.isfinite(X)] if X.dtype.kind == "f" else X
    if finite.size == 0:
        return 1.0, 0.0
    lo, hi = float(finite.min()), float(finite.max())
    if lo >= 0 and hi <= 1 and X.dtype.kind == "f":
        return 1.0, 0.0
    if lo >= 0 and hi <= 255:
        return 255.0, 0.0
    return (hi - lo) or 1.0, lo


def read_npz(path: str | Path, labelled: bool = True) -> RawData:
    """Read and validate an ``.npz``; the encoder is chosen by the caller from ``RawData.kind``.

    ``labelled=False`` (new rows for prediction) makes ``y`` optional.
    """
    p = require_file(path)
    name = str(path)
    # Our own file handle: np.load leaves its handle open when the zip is corrupt.
    with open(p, "rb") as handle:
        try:
            archive = np.load(handle, allow_pickle=False)
        except ValueError as e:  # numpy: "Cannot load file containing pickled data when allow_pickle=False"
            raise DataError(f"{name}: not a valid .npz file ({_short(e)}); save it with numpy.savez(X=..., y=...)") from None
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f"{name}: cannot read as .npz ({_short(e)})") from None
        if not hasattr(archive, "files"):
            raise DataError(f"{name}: holds a single array, not named arrays; save with numpy.savez(path, X=X, y=y)")
        with archive:
            keys = list(archive.files)
            for key in ("X", "y") if labelled else ("X",):
                if key not in keys:
                    raise DataError(f"{name}: no array named {key!r} (arrays: {short_list(keys)}); "
                                    "save with numpy.savez(path, X=X, y=y)")
            arrays = {k: _read_member(archive, k, name) for k in ("X", "y", "ids", "classes", "feature_names")
                      if k in keys}
    X = arrays["X"]
    if X.dtype.kind not in "biuf":
        raise DataError(f"{name}: X has dtype {X.dtype}; expected numbers")
    if X.ndim < 2 or len(X) == 0:
        raise DataError(f"{name}: X has shape {X.shape}; expected at least one row and 2 to 4 dims")
    n = len(X)
    if "y" in arrays:
        labels, missing, classes = _labels(arrays["y"], arrays.get("classes"), n, name)
    else:
        labels, missing, classes = np.full(n, "", dtype=object), np.ones(n, dtype=bool), None
    ids = _ids(arrays.get("ids"), n, name)
    notes: dict[str, Any] = {"X_shape": list(X.shape), "X_dtype": str(X.dtype)}
    if X.ndim == 2:
        names = _feature_names(arrays.get("feature_names"), X.shape[1], name)
        frame = pd.DataFrame(X, columns=names, copy=False)
        return RawData(frame, labels, missing, ids, "tabular", name, "y array", classes, None, notes)
    if X.ndim > 4:
        _layout(X.shape, name)  # raises with the accepted layouts
    return RawData(X, labels, missing, ids, "image", name, "y array", classes, None, notes)


def _read_member(archive: Any, key: str, name: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as e:  # numpy: "Object arrays cannot be loaded when allow_pickle=False"
        raise DataError(f"{name}: array {key!r} is an object (pickled) array; save plain numbers or "
                        f"strings ({_short(e)})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{name}: array {key!r} is corrupt ({_short(e)})") from None


def _labels(y: np.ndarray, classes: np.ndarray | None, n: int, name: str) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    if y.ndim == 2 and y.shape[1] > 1 and y.dtype.kind in "biuf" and np.isin(y, (0, 1)).all() \
            and (y.sum(axis=1) == 1).all():
        y = y.argmax(axis=1)  # one-hot labels
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{name}: y has shape {y.shape}; expected one label per row")
    if len(y) != n:
        raise DataError(f"{name}: X has {n} rows but y has {len(y)} labels")
    if y.dtype.kind not in "biufUS":
        raise DataError(f"{name}: y has dtype {y.dtype}; expected integers or strings")
    if classes is None:
        labels, missing = to_strings(y)
        return labels, missing, None
    names, _ = to_strings(np.asarray(classes).ravel())
    if len(set(names)) != len(names) or (names == "").any():
        raise DataError(f"{name}: the classes array has duplicate or empty names")
    if y.dtype.kind not in "biu" and not (y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))):
        raise DataError(f"{name}: with a classes array, y must hold integer codes 0..{len(names) - 1}")
    codes = y.astype(np.int64)
    out = (codes < 0) | (codes >= len(names))
    if out.any():
        rows = np.flatnonzero(out)
        raise DataError(f"{name}: y codes out of range 0..{len(names) - 1} in {describe_rows(rows)}")
    labels = np.asarray(names, dtype=object)[codes]
    return labels, np.zeros(n, dtype=bool), list(names)


def _ids(ids: np.ndarray | None, n: int, name: str) -> np.ndarray:
    if ids is None:
        return np.arange(n).astype(str)
    strings, missing = to_strings(np.asarray(ids).ravel())
    if len(strings) != n:
        raise DataError(f"{name}: ids has {len(strings)} entries for {n} rows")
    if missing.any():
        raise DataError(f"{name}: ids is empty in {describe_rows(np.flatnonzero(missing))}")
    dup = pd.Series(strings).duplicated()
    if dup.any():
        first = strings[int(np.flatnonzero(dup.to_numpy())[0])]
        raise DataError(f"{name}: ids are not unique ({first!r} appears more than once)")
    return strings


def _feature_names(names: np.ndarray | None, width: int, name: str) -> list[str]:
    if names is None:
        return [f"x{i}" for i in range(width)]
    strings, _ = to_strings(np.asarray(names).ravel())
    if len(strings) != width or len(set(strings)) != width:
        raise DataError(f"{name}: feature_names must be {width} distinct names, one per column of X")
    return [str(s) for s in strings]


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."
