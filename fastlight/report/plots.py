"""The report's Pareto plot: ShapesBench score vs speedup, one labelled point per configuration."""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from fastlight.evaluate.metrics import pareto_front
from fastlight.fileio import atomic_savefig
from fastlight.report.collect import MEASURED


def pareto_plot(data: dict, path: str | Path) -> Path:
    """ShapesBench score vs speedup (log x), one labelled point per row (the baseline a square),
    the Pareto frontier as a line and the ideal clips' score as a dashed one."""
    measured = data["speedup_basis"] == MEASURED
    rows = [r for r in data["rows"] if (r["speedup"] if measured else r["speedup_work"]) is not None]
    pts = [((r["speedup"] if measured else r["speedup_work"]), r["score"]) for r in rows]
    fig = Figure(figsize=(6.4, 4.2))  # no pyplot: no global backend or figure state
    ax = fig.subplots()
    if pts:
        front = pareto_front(pts)
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "-", color="tab:orange", lw=1.5,
                label="Pareto frontier", zorder=1)
        for k, ((x, y), r) in enumerate(zip(pts, rows)):
            ax.scatter([x], [y], s=40, zorder=2, color="black" if k == 0 else "tab:blue",
                       marker="s" if k == 0 else "o")
            ax.annotate(r["method"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xscale("log")
        xs = [p[0] for p in pts]
        lo, hi = min(xs), max(xs)
        ax.set_xlim(lo / 1.4, hi * 1.6 if hi > lo else lo * 2)
    if data["ideal"] is not None:
        ax.axhline(data["ideal"]["score"], color="0.5", ls="--", lw=1, label="ideal clips")
    base = data["rows"][0]["method"]
    ax.set_xlabel(f"speedup vs {base} ({'measured, fastlight bench' if measured else 'NFE x DiT params'})")
    ax.set_ylabel("ShapesBench score (higher is better)")
    ax.set_title("Speed vs quality")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return atomic_savefig(fig, path)
