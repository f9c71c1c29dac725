"""The HTML report of a run and the local review page of its flagged samples.

    >>> from trainyard.report import write_report, serve_review   # doctest: +SKIP
    >>> write_report("runs/demo")                                  # runs/demo/report.html
    >>> serve_review("runs/demo")                                  # http://127.0.0.1:8765/
"""
from __future__ import annotations

from .html_report import render_report, write_report
from .review import create_review_app, make_review_server, read_decisions, serve_review

__all__ = ["write_report", "render_report", "serve_review", "create_review_app", "make_review_server",
           "read_decisions"]
