"""``report.html``: one self-contained page (styles, scripts and images inlined) of a run.

Opens without a network: plotly.js is embedded once in the page head and every figure is a
``<div>`` that draws with it.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from ..run import REPORT_HTML, atomic_write
from . import sections
from .evidence import Evidence
from .run_files import load_run_files

HERE = Path(__file__).parent


def fmt(value: Any) -> str:
    """A value as a person reads it: 4 significant digits, thousands separators, '—' for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    try:  # numpy scalars
        return fmt(value.item())
    except AttributeError:
        return str(value)


def environment() -> Environment:
    """The Jinja environment of the report and review templates (autoescaping on)."""
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    env.filters["pct"] = lambda v: "—" if v is None else f"{100 * float(v):.1f}%"
    env.filters["signed"] = lambda v: "—" if v is None else f"{float(v):+.4f}"
    env.globals["css"] = Markup(static_text("style.css"))
    return env


@lru_cache(maxsize=None)
def static_text(name: str) -> str:
    return (HERE / "static" / name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    # "</script" inside the bundle would close our tag early
    return get_plotlyjs().replace("</script", "<\\/script")


def build_context(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Everything the report template shows, section by section (a missing section is None)."""
    rf = load_run_files(run_dir)
    ev = Evidence(rf)
    ctx = {
        "summary": sections.summary(rf),
        "curves": sections.curves(rf),
        "confusion": sections.confusion(rf),
        "data_map": sections.data_map(rf),
        "gallery": sections.gallery(rf, ev),
        "data_health": sections.data_health(rf),
        "model_health": sections.model_health(rf),
        "repair": sections.repair(rf),
        "tune": sections.tune(rf),
        "explain": sections.explain(rf),
        "notes": rf.notes,
        "generated": _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
    }
    from .. import __version__

    ctx["version"] = __version__
    return ctx


def render_report(run_dir: str | os.PathLike) -> str:
    """The report of ``run_dir`` as an HTML string."""
    ctx = build_context(run_dir)
    marker = "<!--trainyard:plotly.js-->"
    ctx["plotly_js"] = Markup(marker)
    html = environment().get_template("report.html").render(**ctx)
    # embed plotly.js once, and only if some figure needs it
    script = f"<script>{plotly_js()}</script>" if "Plotly.newPlot" in html else ""
    return html.replace(marker, script, 1)


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write ``report.html`` into ``run_dir`` (or to ``out``) atomically and return its path.

    Example::

        >>> write_report("runs/demo")            # doctest: +SKIP
        PosixPath('runs/demo/report.html')
    """
    html = render_report(run_dir)
    return atomic_write(Path(out) if out is not None else Path(run_dir) / REPORT_HTML, html)
