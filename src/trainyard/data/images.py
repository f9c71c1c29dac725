"""Image folders ``root/<class>/<image>`` -> RawData, and the encoder that resizes and scales them.

The class of an image is the first folder under ``root`` (deeper folders belong to it). Folder
symlinks are followed once; a link back into its own ancestors is a loop and an error, so a
folder can never be walked forever. Hidden files/folders and non-image files are skipped.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError, RunError
from .rawdata import RawData

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_WIDE_GRAY = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
# The float32 array of all images must fit in memory; past this, ask for a smaller image_size.
MAX_IMAGE_BYTES = 4 << 30


def _open_error(path: Path | str, e: BaseException) -> DataError:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if os.path.exists(path) and os.path.getsize(path) == 0:
        reason = "empty file (0 bytes)"
    return DataError(f"{path}: cannot read this image ({reason[:150]}); replace or delete the file")


def _image_size(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height), mode from the header only (cheap)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size, im.mode
    except MemoryError:
        raise
    except Exception as e:  # Pillow raises many types for bad files (OSError, SyntaxError, ValueError, ...)
        raise _open_error(path, e) from None


def _pixels(im: Any, size: tuple[int, int], gray: bool) -> np.ndarray:
    """One PIL image -> C x H x W float32 in 0..1, resized to ``size`` = (H, W)."""
    from PIL import Image

    target = (size[1], size[0])
    if im.mode in _WIDE_GRAY:  # 16-bit / int / float gray: scale by its own range before resizing
        a = np.asarray(im, dtype=np.float32)
        top = 65535.0 if im.mode.startswith("I;16") else (1.0 if im.mode == "F" and a.max() <= 1 else 255.0 if a.max() <= 255 else float(a.max()))
        a = Image.fromarray(np.clip(a / top, 0, 1).astype(np.float32))  # float32 2-D -> mode F
        if a.size != target:
            a = a.resize(target, Image.BILINEAR)
        plane = np.asarray(a, dtype=np.float32)
        return plane[None] if gray else np.repeat(plane[None], 3, axis=0)
    if im.mode == "P":  # palette with transparency would warn on a direct RGB conversion
        im = im.convert("RGBA")
    im = im.convert("L" if gray else "RGB")
    if im.size != target:
        im = im.resize(target, Image.BILINEAR)
    a = np.asarray(im, dtype=np.float32) / 255.0
    return a[None] if gray else a.transpose(2, 0, 1)


class ImageEncoder:
    """Images (paths, PIL images or H x W [x C] arrays) -> N x C x H x W float32 in 0..1.

    ``fit`` picks the size (``image_size`` if given, else the most common one) and the mode
    (grayscale if every training image is grayscale, else RGB).
    """

    type_name = "image_folder"

    def __init__(self, image_size: int | Sequence[int] | None = None) -> None:
        self.image_size = image_size
        self.size_: tuple[int, int] | None = None  # (H, W)
        self.gray_: bool | None = None
        self.fit_notes_: dict[str, Any] = {}

    def fit(self, paths: Sequence[str | Path], source: str = "data") -> "ImageEncoder":
        """Read every image header; choose the common size and mode."""
        sizes: Counter = Counter()
        modes: Counter = Counter()
        for path in paths:
            (w, h), mode = _image_size(Path(path))
            sizes[(h, w)] += 1
            modes[mode] += 1
        if not sizes:
            raise DataError(f"{source}: no images")
        if self.image_size is not None:
            s = self.image_size
            self.size_ = (int(s), int(s)) if np.isscalar(s) else (int(s[0]), int(s[1]))
            if min(self.size_) < 1:
                raise DataError(f"{source}: image_size must be positive, got {s}")
        else:
            self.size_ = sizes.most_common(1)[0][0]
        self.gray_ = all(m in _GRAY_MODES for m in modes)
        channels = 1 if self.gray_ else 3
        need = len(paths) * channels * self.size_[0] * self.size_[1] * 4
        if need > MAX_IMAGE_BYTES:
            raise DataError(f"{source}: {len(paths)} images of {self.size_[0]}x{self.size_[1]} need "
                            f"{need / 2**30:.1f} GiB as float32; pass a smaller image_size (e.g. 64)")
        self.fit_notes_ = {"image_size": list(self.size_), "mode": "L" if self.gray_ else "RGB",
                           "sizes_seen": {f"{h}x{w}": c for (h, w), c in sizes.most_common(10)},
                           "modes_seen": dict(modes), "resized": int(sum(c for s, c in sizes.items() if s != self.size_))}
        return self

    def transform(self, images: Sequence[Any], info: dict[str, Any] | None = None,
                  source: str = "new data") -> np.ndarray:
        """Load, convert and resize each image; a corrupt file raises DataError naming it."""
        from PIL import Image

        if self.size_ is None:
            raise RunError("ImageEncoder.transform called before fit")
        channels = 1 if self.gray_ else 3
        out = np.empty((len(images), channels, *self.size_), dtype=np.float32)
        for i, item in enumerate(images):
            if isinstance(item, np.ndarray):
                item = Image.fromarray(item if item.dtype == np.uint8 else np.clip(item * 255, 0, 255).astype(np.uint8))
            if isinstance(item, Image.Image):
                out[i] = _pixels(item, self.size_, self.gray_)
                continue
            try:
                with Image.open(item) as im:
                    im.load()  # decodes now: a truncated file fails here, not later
                    out[i] = _pixels(im, self.size_, self.gray_)
            except MemoryError:
                raise
            except Exception as e:  # Pillow's errors for bad files are of many types
                raise _open_error(item, e) from None
        if info is not None:
            info["missing"], info["missing_total"] = {}, 0
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {"type": self.type_name, "version": 1, "size": list(self.size_) if self.size_ else None,
                "mode": None if self.gray_ is None else ("L" if self.gray_ else "RGB")}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "ImageEncoder":
        """Rebuild from :meth:`to_dict` output."""
        if not isinstance(state, dict) or state.get("type") != cls.type_name:
            raise RunError("not an image_folder encoder state")
        enc = cls(tuple(state["size"]))
        enc.size_ = tuple(state["size"])
        enc.gray_ = state["mode"] == "L"
        return enc


def list_images(root: Path, labelled: bool = True) -> tuple[list[Path], list[str], list[str], dict[str, str]]:
    """Walk ``root``: ``(paths, class names, relative ids, skipped {relative path: reason})``.

    ``labelled=False`` (new images for prediction) also takes images directly in ``root``.
    """
    real_root = os.path.realpath(root)
    visited = {real_root}
    paths: list[Path] = []
    labels: list[str] = []
    ids: list[str] = []
    skipped: dict[str, str] = {}

    def fail(e: OSError) -> None:
        raise DataError(f"{e.filename}: cannot list this folder ({e.strerror})")

    for dirpath, dirnames, filenames in os.walk(root, topdown=True, onerror=fail, followlinks=True):
        here = Path(dirpath)
        real_here = os.path.realpath(dirpath)
        rel_here = here.relative_to(root)
        keep = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            full = here / d
            real = os.path.realpath(full)
            if full.is_symlink() and (real_here == real or real_here.startswith(real.rstrip(os.sep) + os.sep)):
                raise DataError(f"{full}: symlink loop (points to {real}, which contains it); remove the link")
            if real in visited:
                skipped[(rel_here / d).as_posix()] = f"folder already read (symlink to {real})"
                continue
            visited.add(real)
            keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            rel = (rel_here / f).as_posix()
            if f.startswith("."):
                continue
            if Path(f).suffix.lower() not in IMAGE_SUFFIXES:
                skipped[rel] = "not an image file"
                continue
            if rel_here == Path(".") and labelled:
                skipped[rel] = "image directly in the root folder (no class folder)"
                continue
            paths.append(here / f)
            labels.append(rel_here.parts[0] if rel_here.parts else "")
            ids.append(rel)
    return paths, labels, ids, skipped


def read_image_folder(root: str | Path, labelled: bool = True) -> RawData:
    """List a ``root/<class>/<image>`` folder; images are decoded by :class:`ImageEncoder`."""
    root_path = Path(root)
    if not os.access(root_path, os.R_OK | os.X_OK):
        raise DataError(f"{root}: cannot read this folder (permission denied)")
    paths, labels, ids, skipped = list_images(root_path, labelled)
    if not paths:
        raise DataError(f"{root}: no images found in class folders (expected {root}/<class>/<image> with "
                        f"extensions {', '.join(IMAGE_SUFFIXES)})")
    raw = pd.DataFrame({"path": ids, "label": labels})
    notes: dict[str, Any] = {"skipped": dict(list(skipped.items())[:100]), "n_skipped": len(skipped)}
    label_arr = np.asarray(labels, dtype=object)
    return RawData([str(p) for p in paths], label_arr, label_arr == "",
                   np.asarray(ids, dtype=object), "image", str(root), "class folder", None, raw, notes)
