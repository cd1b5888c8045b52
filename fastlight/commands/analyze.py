"""`fastlight analyze MODEL`: Stage I block importance (ELBO / metric drop) and width saliency."""
from __future__ import annotations

from fastlight.commands.options import finite_float, output_folder, whole_number

import yaml


def add_parser(sub) -> None:
    s = sub.add_parser("analyze", help="Stage I: block importance (ELBO / metric drop) and width saliency")
    s.add_argument("model", help="model folder or 'shapes-teacher'")
    s.add_argument("--calib", type=whole_number, default=64, help="calibration samples (same set for every block)")
    s.add_argument("--out", type=output_folder, default="runs/analyze")
    s.add_argument("--methods", default="elbo", help="comma list of elbo, taylor, metric")
    s.add_argument("--iterative", action="store_true", help="also drop-and-rescore greedily")
    s.add_argument("--seed", type=whole_number, default=0)
    s.add_argument("--data", default=None,
                   help="calibration data source (default: the one the model folder names), e.g. "
                        "'{_component_: latents, path: SHARDS}'; its calibration stream is used")
    s.add_argument("--latents", default=None, help="calibration latents .safetensors (x0, text[, image, ...])")
    s.add_argument("--batch-size", type=whole_number, default=None)
    s.add_argument("--shift", type=finite_float, default=None)
    s.add_argument("--device", default=None)
    s.add_argument("--metric", default=None, help="video metric for --methods metric (default: the model folder's)")
    s.add_argument("--metric-cases", type=whole_number, default=16)
    s.add_argument("--metric-steps", type=whole_number, default=20)
    s.add_argument("--metric-guidance", "--metric-cfg", dest="metric_guidance", type=finite_float, default=4.0,
                   help="guidance scale w of the metric's samples")
    s.set_defaults(fn=run)


def run(a) -> None:
    from fastlight.analyze.importance import compute_importance

    data = None if a.data is None else yaml.safe_load(a.data)
    res = compute_importance(a.model, a.calib, a.out, tuple(m.strip() for m in a.methods.split(",")), a.iterative,
                             a.seed, latents=a.latents, batch_size=a.batch_size, shift=a.shift, device=a.device,
                             metric_cases=a.metric_cases, metric_steps=a.metric_steps,
                             metric_guidance=a.metric_guidance, data=data, metric=a.metric)
    print_summary(res)


def print_summary(res: dict) -> None:
    """The tables of every method `compute_importance` ran, its rank correlations, and the files it wrote."""
    from rich.console import Console

    from fastlight.analyze.importance import importance_table
    from fastlight.analyze.taylor import print_taylor

    con = Console()
    if "rows" in res:
        con.print(importance_table(res["rows"], "ELBO importance (reference: data)"))
    if "rows_data_free" in res:
        con.print(importance_table(res["rows_data_free"], "ELBO importance (reference: self, data-free)"))
        con.print(f"Spearman rank correlation data vs data-free: {res['spearman_data_vs_data_free']:.3f}")
    if "iterative_order" in res:
        con.print("iterative drop order (first dropped first): " + " ".join(str(i) for i in res["iterative_order"]))
    if "taylor" in res:
        print_taylor(res["taylor"])
    if "rows_metric" in res:
        con.print(importance_table(res["rows_metric"], f"metric-drop importance ({res['metric']})"))
        if "spearman_metric_vs_elbo" in res:
            con.print(f"Spearman rank correlation metric-drop vs ELBO (data): {res['spearman_metric_vs_elbo']:.3f}")
    for name, f in res["files"].items():
        con.print(f"{name}: {f}")
