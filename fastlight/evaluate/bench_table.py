"""The printed table of `fastlight bench`: one row per model, end to end and denoise-only side by
side, then each model's speedups against the first."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


def fmt_s(x: float) -> str:
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


def fmt_params(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def print_rows(rows: list[dict], console: Console | None = None) -> None:
    """A rich table of bench rows, then each model's speedup against the first as ratios."""
    console = console or Console()
    first = rows[0]
    t = Table(title=f"fastlight bench ({first['device']}, batch {first['batch_size']}, time per video)")
    for col, just in [("model", "left"), ("sampler", "left"), ("steps", "right"), ("guidance", "right"),
                      ("NFE", "right"), ("DiT params", "right"), ("end to end", "right"), ("min - max", "right"),
                      ("text", "right"), ("denoise only", "right"), ("decode", "right"), ("peak mem", "right"),
                      ("speedup", "right")]:
        t.add_column(col, justify=just)
    for r in rows:
        ts = r["time_s"]
        mem = "-" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f} MiB"
        t.add_row(r["model"], r["sampler"], str(r["steps"]), f"{r['cfg']:g}", str(r["nfe"]), fmt_params(r["dit_params"]),
                  fmt_s(ts["median"]), f"{fmt_s(ts['min'])} - {fmt_s(ts['max'])}", fmt_s(r["text_s"]),
                  fmt_s(r["denoise_s"]), fmt_s(r["decode_s"]), mem, f"{r['speedup']:.2f}x")
    console.print(t)
    # the lines below never wrap (soft_wrap), so what they say does not depend on the terminal's width
    console.print(f"peak memory: {first['mem_method']}", soft_wrap=True)
    for r in rows[1:]:
        work = (first["nfe"] * first["dit_params"]) / max(r["nfe"] * r["dit_params"], 1)
        console.print(f"speedup of {r['model']} vs {first['model']}: {r['speedup']:.2f}x end to end, "
                      f"{r['denoise_speedup']:.2f}x denoise only (NFE {first['nfe']} -> {r['nfe']}, "
                      f"NFE x params {work:.2f}x fewer)", soft_wrap=True)
