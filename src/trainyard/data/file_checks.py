"""Checks on a data file before parsing it: exists, not empty, UTF-8 text without NUL bytes, a sane header."""
from __future__ import annotations

import codecs
import csv
import os
from pathlib import Path

from ..errors import DataError

# A header wider than this is almost always a transposed or binary file; encoding 10^5 columns
# one by one would take minutes, so we refuse early with a clear message instead.
MAX_COLUMNS = 10_000
_BLOCK = 1 << 24  # 16 MiB: large enough to be fast, small enough to keep memory flat


def require_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path; DataError if it is missing, a folder, or unreadable."""
    p = Path(path)
    if not p.exists():
        hint = " (a broken symlink)" if p.is_symlink() else ""
        raise DataError(f"{p}: file not found{hint}; check the path")
    if p.is_dir():
        raise DataError(f"{p}: is a folder, expected a file")
    if not os.access(p, os.R_OK):
        raise DataError(f"{p}: cannot be read (permission denied)")
    return p


def check_utf8_text(path: Path) -> None:
    """Raise DataError naming the byte offset and line of the first NUL byte or invalid UTF-8 sequence.

    One streaming pass: a pure-ASCII block (the usual case) is checked with ``bytes.isascii``.
    We refuse rather than guess latin-1, because a wrong guess silently changes category names.
    """
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes)")
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0  # bytes of the file before the current block
    lines = 1
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        while True:
            block = f.read(_BLOCK)
            final = not block
            nul = block.find(b"\x00")
            if nul >= 0:
                line = lines + block.count(b"\n", 0, nul)
                hint = "it looks UTF-16 encoded" if head[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head else "it looks binary"
                raise DataError(f"{path}: NUL byte at byte {offset + nul} (line {line}); {hint} - "
                                "save it as UTF-8 text (CSV)")
            pending = len(decoder.getstate()[0])
            if final or pending or not block.isascii():
                try:
                    decoder.decode(block, final)
                except UnicodeDecodeError as e:
                    at = offset - pending + e.start
                    line = lines + block.count(b"\n", 0, max(0, at - offset))
                    bad = (block[at - offset:at - offset + 1] if at >= offset else b"") or b"?"
                    raise DataError(f"{path}: not valid UTF-8 at byte {at} (line {line}, byte 0x{bad[0]:02x}); "
                                    "save the file as UTF-8 (in a spreadsheet: 'CSV UTF-8')") from None
            if final:
                return
            lines += block.count(b"\n")
            offset += len(block)


def guess_delimiter(path: Path) -> str:
    """``,`` unless the first line has no comma but does have a tab, semicolon or pipe (or it is .tsv)."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    with open(path, "rb") as f:
        first = f.readline(1 << 20)
    if b"," not in first:
        for d in (b"\t", b";", b"|"):
            if d in first:
                return d.decode()
    return ","


def read_header(path: Path, delimiter: str) -> tuple[list[str], int]:
    """Column names from the first non-blank record, and the number of lines up to its end.

    Checks width and duplicate names; empty names become ``Unnamed: i`` (as pandas names an
    unnamed index column).
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            for row in reader:
                if any(cell.strip() for cell in row):
                    break
            else:
                raise DataError(f"{path}: the file has no header and no rows (only blank lines)")
            lines = reader.line_num
    except csv.Error as e:
        raise DataError(f"{path}: cannot read the header line: {e}") from None
    if len(row) > MAX_COLUMNS:
        raise DataError(f"{path}: {len(row)} columns in the header; at most {MAX_COLUMNS} are supported - "
                        "select the columns you need first (or save wide numeric data as .npz)")
    names = [name if name.strip() else f"Unnamed: {i}" for i, name in enumerate(row)]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise DataError(f"{path}: column {name!r} appears twice in the header (columns {seen[name] + 1} "
                            f"and {i + 1}); rename one of them")
        seen[name] = i
    return names, lines

