"""`fastlight report RUN_DIR`: one Markdown + one self-contained HTML report of a run folder.

What it reads: `fastlight.report.collect` (ShapesBench results, bench JSON, importance files).
What it writes (into OUT, default RUN_DIR/report; every file atomically: temporary file + rename):
  report.md       tables in Markdown, relative image links (`markdown.py`)
  report.html     the same, self-contained: images and GIFs as base64 data URIs, inline CSS (`html.py`)
  report.json     every table's data ({"tables": {name: {title, columns, rows}}, ...}) (`tables.py`)
  tables/*.json   one file per table, linked under the table
  pareto.png      ShapesBench score vs speedup, labelled points, Pareto frontier (`plots.py`)
  samples.gif     the rows' samples/grid.gif stacked (same cases and seeds for every model: the
                  ShapesBench cases are fixed), a label strip above each; when every grid's lower
                  half (the world's ideal clips) is the same, it is shown once at the bottom (`samples.py`)
  importance*.png copies of the importance plots found (drawn from importance.json if no PNG)

A JSON file under RUN_DIR that could not be read (collect's "unreadable") is named in the command's
output, in the report's intro and "Files not read" section, and in report.json.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from fastlight.analyze.importance import plot_importance
from fastlight.errors import check_dir_creatable, make_dir
from fastlight.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from fastlight.report.collect import collect
from fastlight.report.html import html_document
from fastlight.report.markdown import markdown_document
from fastlight.report.plots import pareto_plot
from fastlight.report.samples import side_by_side_gif
from fastlight.report.tables import comparison_table, fmt, importance_table, shapesbench_table, timing_table

REPORT_DIR = "report"


@dataclass(frozen=True)
class Report:
    """What `build_report` wrote."""

    markdown: Path  # report.md (beside it report.json, tables/, pareto.png, samples.gif)
    html: Path  # report.html, self-contained
    unreadable: str | None  # one sentence naming the JSON files under the run folder that could not be read
    skipped: str | None  # one sentence naming the links / outside paths it did not read


def _slug(s: str) -> str:
    out = "".join(c if c.isalnum() or c in "-_" else "-" for c in s).strip("-")
    return out or "run"


def _unique(name: str, used: set) -> str:
    n, k = name, 2
    while n in used:
        n, k = f"{name}-{k}", k + 1
    used.add(n)
    return n


def _tables(data: dict) -> tuple[dict[str, dict], list[str], list[str]]:
    """({name: table}, the timing tables' names, the importance tables' names). No table file is
    named shapesbench.json: a report inside a run folder must not look like a result."""
    tables: dict[str, dict] = {"comparison": comparison_table(data), "shapesbench-parts": shapesbench_table(data)}
    used = set(tables)
    timing_names, importance_names = [], []
    for b in data["bench"]:
        n = _unique("timing-" + _slug(Path(b["file"]).with_suffix("").as_posix()), used)
        tables[n] = timing_table(b)
        timing_names.append(n)
    for e in data["importance"]:
        if e["doc"] is not None:
            n = _unique("importance-" + _slug(e["method"]), used)
            tables[n] = importance_table(e)
            importance_names.append(n)
    return tables, timing_names, importance_names


def _importance_plots(data: dict, out: Path) -> list[tuple[str, Path]]:
    """[(method, png in out)]: each importance.png copied, or drawn from its importance.json."""
    pngs = []
    for e in data["importance"]:
        dst = out / f"importance-{_slug(e['method'])}.png"
        if e["png"]:
            atomic_write_bytes(dst, Path(e["png"]).read_bytes())
            pngs.append((e["method"], dst))
        elif e["doc"] is not None:
            try:
                plot_importance(e["doc"]["blocks"], dst, f"block importance ({e['method']})")
                pngs.append((e["method"], dst))
            except (KeyError, TypeError, ValueError) as err:  # a malformed file still gets its table
                data["unreadable"].append({"file": e["rel"], "reason": f"blocks cannot be plotted ({type(err).__name__})"})
    return pngs


def _table_doc(t: dict) -> dict:
    return {"title": t["title"], "columns": t["columns"], "data": t["rows"], "notes": t["notes"]}


def _samples_gif(data: dict, out: Path) -> dict | None:
    grids = []
    for r in data["rows"]:
        if r["grid_gif"]:
            label = f"{r['method']} | {r['steps']} steps | NFE {fmt(r['nfe'], '.0f')} | " \
                    f"pruned {fmt(r['prune_ratio'], '.0%')} | ShapesBench {r['score']:.3f}"
            grids.append((label, r["grid_gif"]))
    return side_by_side_gif(grids, out / "samples.gif") if grids else None


def unreadable_text(data: dict) -> str | None:
    """One sentence naming every JSON file that could not be read, or None."""
    bad = data["unreadable"]
    if not bad:
        return None
    return (f"{len(bad)} JSON file(s) under the run folder could not be read and are not in this report: "
            + "; ".join(f"{u['file']} ({u['reason']})" for u in bad) + ".")


def skipped_text(data: dict) -> str | None:
    """One sentence naming every file the report did not read because it is a link or outside the run folder."""
    bad = data.get("skipped") or []
    if not bad:
        return None
    return (f"skipped {len(bad)} file(s) (only regular files inside the run folder are read): "
            + "; ".join(f"{u['file']} ({u['reason']})" for u in bad) + ".")


def _sections(data: dict, out: Path, pareto: Path, gif_info: dict | None, timing_names: list[str],
              importance_names: list[str], imp_pngs: list[tuple[str, Path]]) -> list[tuple]:
    """(heading, table names, [(alt, image)], caption) in the order the report shows them."""
    missing = [r["method"] for r in data["rows"] if not r["grid_gif"]]
    gif_caption = ("Each model's first ShapesBench cases: the same prompts, first frames and noise seeds for every "
                   "model (the cases are fixed). "
                   + ("The ideal clips (the world's own rendering) are shown once at the bottom."
                      if gif_info and gif_info["ideal_once"] else
                      "In each grid: top row generated, bottom row the ideal clips."))
    if missing:
        gif_caption += " No samples/grid.gif for: " + ", ".join(missing) + "."
    sections = [("Comparison", ["comparison"], [], None),
                ("Speed vs quality", [], [("Pareto plot", pareto)],
                 "Higher and further right is better; the line joins the configurations no other one beats on "
                 "both speed and ShapesBench score. Square = baseline."),
                ("Samples side by side", [], [("samples", out / "samples.gif")] if gif_info else [],
                 gif_caption if gif_info else "No samples/grid.gif found (run fastlight evaluate with videos)."),
                ("ShapesBench parts", ["shapesbench-parts"], [], None)]
    if timing_names:
        sections.append(("Latency (fastlight bench)", timing_names, [], None))
    if imp_pngs or importance_names:
        sections.append(("Block importance (Stage I)", importance_names, [(f"importance {m}", p) for m, p in imp_pngs],
                         None))
    if data["unreadable"] or data.get("skipped"):
        sections.append(("Files not read", [], [], " ".join(t for t in (unreadable_text(data), skipped_text(data)) if t)))
    return sections


def build_report(run_dir: str | Path, out: str | Path | None = None, title: str | None = None,
                 baseline: str | None = None, progress: bool = True) -> Report:
    """The report of a run folder (`fastlight report RUN_DIR [--out DIR] [--title TEXT] [--baseline
    METHOD]`): write report.md, report.html, report.json, tables/*.json, pareto.png, samples.gif (and
    copies of the importance plots) into `out` (default RUN_DIR/report)."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / REPORT_DIR
    check_dir_creatable(out, "report folder (--out)")  # before any work
    with tqdm(total=6, desc="report", unit="step", disable=None if progress else True) as bar:  # no bar off a terminal
        def step(what: str):
            bar.set_postfix_str(what)
            bar.update(1)

        bar.set_postfix_str("collect")
        data = collect(run_dir, baseline=baseline, exclude=out)
        title = title or f"fastlight report: {run_dir.resolve().name}"
        make_dir(out, "report folder")
        step("tables")
        tables, timing_names, importance_names = _tables(data)
        imp_pngs = _importance_plots(data, out)
        links = {}
        for n, t in tables.items():
            atomic_write_json(out / "tables" / f"{n}.json", _table_doc(t))
            links[n] = f"tables/{n}.json"
        step("pareto plot")
        pareto = pareto_plot(data, out / "pareto.png")
        step("side-by-side GIF")
        gif_info = _samples_gif(data, out)
        step("markdown + html")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        intro = (f"Run folder `{run_dir}`; {len(data['rows'])} evaluated configuration(s); baseline "
                 f"`{data['baseline']}`; generated {stamp} by `fastlight report`.")
        if data["unreadable"]:
            intro += f" {len(data['unreadable'])} JSON file(s) could not be read (see \"Files not read\")."
        sections = _sections(data, out, pareto, gif_info, timing_names, importance_names, imp_pngs)
        md_text = markdown_document(title, intro, sections, tables, links, out)
        html_text = html_document(title, intro, sections, tables, links)
        step("write")
        files = {"markdown": "report.md", "html": "report.html", "pareto": "pareto.png",
                 "samples": "samples.gif" if gif_info else None,
                 "importance": [os.path.relpath(p, out) for _, p in imp_pngs], "tables": links}
        atomic_write_json(out / "report.json", {
            "title": title, "run_dir": str(run_dir), "generated": stamp, "baseline": data["baseline"],
            "speedup_basis": data["speedup_basis"], "dims": data["dims"], "avg_dims": data["avg_dims"],
            "tables": {n: _table_doc(t) for n, t in tables.items()},
            "samples_gif": gif_info and {k: v for k, v in gif_info.items() if k != "path"},
            "sources": {"shapesbench": [r["json"] for r in data["rows"]], "bench": [b["path"] for b in data["bench"]],
                        "importance": [{"json": e["json"], "png": e["png"]} for e in data["importance"]]},
            "files": files, "unreadable": data["unreadable"], "skipped": data.get("skipped", []),
        })
        md_path = atomic_write_text(out / "report.md", md_text)
        html_path = atomic_write_text(out / "report.html", html_text)
        step("done")
    return Report(md_path, html_path, unreadable_text(data), skipped_text(data))
