"""`fastlight report RUN_DIR`: Markdown + self-contained HTML report of a run folder."""
from __future__ import annotations

from fastlight.commands.options import output_folder


def add_parser(sub) -> None:
    s = sub.add_parser("report", help="Markdown + self-contained HTML report of a run folder")
    s.add_argument("run_dir", help="folder searched recursively for shapesbench.json, bench JSON and importance files")
    s.add_argument("--out", type=output_folder, default=None, help="output folder (default RUN_DIR/report)")
    s.add_argument("--title", default=None, help="report title (default: 'fastlight report: <run folder name>')")
    s.add_argument("--baseline", default=None,
                   help="method (folder path relative to RUN_DIR) to compare against (default: the most NFE x params)")
    s.set_defaults(fn=run)


def run(a) -> None:
    from fastlight.report.report import build_report

    report = build_report(a.run_dir, a.out, a.title, a.baseline)
    if report.unreadable:
        print(f"report: {report.unreadable}")
    if report.skipped:
        print(f"report: {report.skipped}")
    print(f"report: {report.markdown} and {report.html}")
