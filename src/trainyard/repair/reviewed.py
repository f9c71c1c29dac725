"""Human review decisions (``reviewed.csv``: ``id,decision``), applied before any automatic repair.

A decision is ``accept`` (take the suggested label of the baseline diagnosis), ``reject`` (keep the
given label) or a class name (set that label). Every reviewed row is then exempt from automatic
changes: a person's decision is not second-guessed by the model.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError

ACCEPT, REJECT = "accept", "reject"


@dataclass
class Decision:
    line: int  # line in the file (the header is line 1)
    id: str
    decision: str  # "accept", "reject" or a class name


@dataclass
class ReviewOutcome:
    """What applying the decisions did (counts for repair.json)."""

    accepted: int = 0
    rejected: int = 0
    set_label: int = 0
    changed: int = 0  # rows whose training label differs from the given one after the decisions
    skipped_test: list[str] = field(default_factory=list)  # ids of test rows: never edited

    def to_dict(self) -> dict:
        return {"accepted": self.accepted, "rejected": self.rejected, "set_label": self.set_label,
                "changed": self.changed, "skipped_test_rows": len(self.skipped_test)}


def read_reviewed(path: str | Path) -> list[Decision]:
    """Read ``id,decision`` rows (later rows for the same id win, as the review page appends)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: reviewed file not found; write it with `trainyard review RUN` or by hand "
                        "(a CSV with columns id,decision)") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save the reviewed file as a UTF-8 CSV") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [h.strip().lower() for h in rows[0][:2]] != ["id", "decision"]:
        raise DataError(f"{path}: the first line must be the header id,decision")
    out: list[Decision] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < 2 or not row[1].strip():
            raise DataError(f"{path}, line {line}: expected id,decision (decision = accept, reject or a class name), "
                            f"got {','.join(row)!r}")
        out.append(Decision(line, row[0].strip(), row[1].strip()))
    return out


def apply_reviewed(path: str | Path, ids: np.ndarray, labels: np.ndarray, suggested: np.ndarray, classes: list[str],
                   test_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, ReviewOutcome]:
    """Apply the decisions in ``path`` to development rows.

    Args:
        ids, labels, suggested: per development row (training + validation): the user's id, the given
            label code, and the baseline diagnosis' suggested code (-1 if none).
        classes: class names (a decision naming another class is an error).
        test_ids: ids of test rows; decisions on them are skipped (the test split measures the repair,
            so nothing may change there) and reported.

    Returns:
        ``(labels, exempt, outcome)``: the new label codes, a mask of reviewed rows, and counts.

    Raises:
        DataError naming the file and line for an unknown id or class.
    """
    decisions = read_reviewed(path)
    row_of = {str(i): r for r, i in enumerate(ids)}
    test = {str(i) for i in test_ids}
    code_of = {c: k for k, c in enumerate(classes)}
    labels, exempt = labels.copy(), np.zeros(len(labels), dtype=bool)
    given = labels.copy()
    outcome = ReviewOutcome()
    final: dict[int, Decision] = {}
    for d in decisions:
        if d.id in test:
            outcome.skipped_test.append(d.id)
            continue
        if d.id not in row_of:
            raise DataError(f"{path}, line {d.line}: unknown id {d.id!r}; ids must be row ids of the data being "
                            f"repaired (as in samples.csv)")
        kind = d.decision.lower()
        if kind not in (ACCEPT, REJECT) and d.decision not in code_of:
            raise DataError(f"{path}, line {d.line}: unknown class {d.decision!r} for id {d.id!r}; a decision is "
                            f"accept, reject or one of the classes {', '.join(classes[:20])}")
        final[row_of[d.id]] = d
    for row, d in final.items():
        kind = d.decision.lower()
        if kind == ACCEPT:
            if suggested[row] >= 0:
                labels[row] = suggested[row]
            outcome.accepted += 1
        elif kind == REJECT:
            labels[row] = given[row]
            outcome.rejected += 1
        else:
            labels[row] = code_of[d.decision]
            outcome.set_label += 1
        exempt[row] = True
    outcome.changed = int((labels != given).sum())
    return labels, exempt, outcome
