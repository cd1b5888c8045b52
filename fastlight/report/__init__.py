"""`fastlight report RUN_DIR`: tables, plots and side-by-side samples -> report.md / report.html."""
from fastlight.report.report import collect, report_command

__all__ = ["collect", "report_command"]
