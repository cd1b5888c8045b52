"""`fastlight report RUN_DIR`: tables, plots and side-by-side samples -> report.md / report.html.

Files, one purpose each: ``collect`` (rows from the run folder), ``tables``, ``plots`` (Pareto),
``samples`` (the side-by-side GIF), ``markdown``, ``html``, ``report`` (writes them all)."""
from fastlight.report.collect import collect
from fastlight.report.report import Report, build_report

__all__ = ["Report", "build_report", "collect"]
