"""Stage I block importance (FastLightGen; DESIGN.md sections 1-2).

ELBO importance (FastLightGen Stage I). With the rectified flow of Wan,

    x_t    = (1 - s) x0 + s eps                       (flow.add_noise)
    x0_hat = x_t - s v(x_t, s, c; skip)               (Tweedie, flow.x0_from_v)
    err(skip) = mean_{c,f,h,w} (x0_hat(skip) - x0_ref)^2      per sample, (B,)

and the importance of block b is the paired increase of that denoising error when b is
skipped (identity on its input) on top of the blocks already skipped (`skip_base`):

    d_b(n)  = err_n(skip_base + {b}) - err_n(skip_base)         n = 1..N calibration samples
    score_b = mean_n d_b(n),   stderr_b = std_n d_b(n) / sqrt(N)

The ELBO of a flow model is (up to a weighting in s) the expected denoising error, so
score_b estimates how much the ELBO worsens without b; the same (x0, eps, s) for every b
(common random numbers) make the differences low-variance. Reference:
  "data": x0_ref = the true x0 (needs clean data);
  "self": x0_ref = the UNSKIPPED model's own x0_hat (data-free: only the inputs' noise
          and conditions are needed; a block that does nothing scores exactly 0).
For TI2V conditions (cond.image is set) the first latent frame is the clean image, so it
is left out of the error.

Iterative variant: drop the least important block, rescore the rest with it skipped, repeat.

Metric-drop importance (VDMini / ICMD): score_b = metric(full) - metric(skip {b}) for any
callable metric; `fastlight analyze --methods metric` builds a registered one (entry point group
`fastlight.metrics`, e.g. the Shapes plug-in's oracle score `shapes-oracle`) by name.

Files: importance.json (see `write_importance`), importance.png (`plot_importance`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable

import torch
from rich.table import Table
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from fastlight.analyze.calib import CalibBatch, CalibrationSet, model_calibration
from fastlight.analyze.defaults import model_defaults
from fastlight.analyze.io import atomic_savefig, atomic_write_json, check_fingerprint, read_json
from fastlight.analyze.taylor import taylor_saliency, write_taylor
from fastlight.diffusion.flow import add_noise, x0_from_v
from fastlight.errors import DataError, InputError, check_dir_creatable, make_dir
from fastlight.models.denoiser import Denoiser
from fastlight.models.load import load_denoiser, model_fingerprint, resolve_model_path
from fastlight.plugins import component, registered

REFERENCES = ("data", "self")
METHODS = ("elbo", "taylor", "metric")
ROW_KEYS = ("index", "kind", "kind_index", "params", "score", "stderr", "rank")


# ---- ELBO importance ------------------------------------------------------------------------
def _model_device_dtype(model: Denoiser) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


def tweedie_x0(model: Denoiser, batch: CalibBatch, skip: Iterable[int] = ()) -> torch.Tensor:
    """x0_hat = x_t - s v(x_t, s, c; skip) with x_t = (1 - s) x0 + s eps, in float32. (B, C, F, H, W)"""
    device, dtype = _model_device_dtype(model)
    x0, eps, s = batch.x0.to(device).float(), batch.eps.to(device).float(), batch.s.to(device).float()
    x_t = add_noise(x0, eps, s)  # (B, C, F, H, W) float32
    v = model(x_t.to(dtype), s, batch.cond.to(device), skip=skip)
    return x0_from_v(x_t, s, v)  # float32 (x_t is float32)


def denoising_error(x0_hat: torch.Tensor, x0_ref: torch.Tensor, has_image: bool) -> torch.Tensor:
    """Per-sample mean squared error over all non-batch dims, (B,), first frame excluded for TI2V."""
    d = x0_hat.float() - x0_ref.float()  # (B, C, F, H, W)
    if has_image:
        if d.shape[2] < 2:
            raise DataError("TI2V calibration clips need at least 2 frames (the first one is the clean image)")
        d = d[:, :, 1:]
    return d.pow(2).flatten(1).mean(1).double()  # (B,)


def _check_skip(model: Denoiser, skip: Iterable[int], what: str) -> frozenset[int]:
    skip = frozenset(int(i) for i in skip)
    bad = sorted(i for i in skip if not 0 <= i < model.num_blocks)
    if bad:
        raise InputError(f"{what} names block {bad[0]} but the model has blocks 0..{model.num_blocks - 1}")
    return skip


def _bar(total: int, progress: bool, desc: str):
    return tqdm(total=total, disable=not progress, desc=desc, leave=False)


def _mean_stderr(d: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error std / sqrt(n) of per-sample differences d (n,). stderr NaN if n < 2."""
    n = d.numel()
    mean = float(d.mean())
    stderr = float(d.std(unbiased=True) / math.sqrt(n)) if n >= 2 else float("nan")
    return mean, stderr


def assign_ranks(rows: list[dict]) -> list[dict]:
    """rank 0 = most important (largest score); ties broken by block index. In place; returns rows."""
    order = sorted(rows, key=lambda r: (-r["score"], r["index"]))
    for rank, r in enumerate(order):
        r["rank"] = rank
    return rows


def _row(info, score: float, stderr: float) -> dict:
    return {"index": info.index, "kind": info.kind, "kind_index": info.kind_index, "params": info.num_params,
            "score": score, "stderr": stderr, "rank": -1}


@torch.inference_mode()
def elbo_importance(
    model: Denoiser,
    calib: CalibrationSet,
    reference: str = "data",
    skip_base: Iterable[int] = (),
    progress: bool = True,
) -> list[dict]:
    """ELBO importance of every block not in `skip_base` (module docstring):

        score_b = mean_n [ err_n(skip_base + {b}) - err_n(skip_base) ],  err_n = ||x0_hat - x0_ref||^2 / dim

    reference "data" (x0_ref = x0) or "self" (x0_ref = x0_hat of the unskipped model; data-free).
    Costs (number of candidate blocks + 1 or 2) forwards per calibration batch.
    Returns rows sorted by block index: {index, kind, kind_index, params, score, stderr, rank}.
    """
    if reference not in REFERENCES:
        raise InputError(f"reference must be one of {REFERENCES}, got {reference!r}")
    if calib.num_samples < 1:
        raise InputError("calibration set is empty: it holds no samples")
    skip_base = _check_skip(model, skip_base, "skip_base")
    candidates = [b for b in model.blocks if b.index not in skip_base]
    if not candidates:
        raise InputError("every block is already skipped: nothing left to score")
    diffs: dict[int, list[torch.Tensor]] = {b.index: [] for b in candidates}
    bar = _bar(len(calib) * len(candidates), progress, f"ELBO importance ({reference})")
    try:
        for batch in calib:
            has_image = batch.cond.image is not None
            x0_base = tweedie_x0(model, batch, skip_base)  # (B, C, F, H, W)
            if reference == "data":
                x0_ref = batch.x0.to(x0_base.device)
            else:
                x0_ref = x0_base if not skip_base else tweedie_x0(model, batch, ())
            err_base = denoising_error(x0_base, x0_ref, has_image)  # (B,)
            for b in candidates:
                err_b = denoising_error(tweedie_x0(model, batch, skip_base | {b.index}), x0_ref, has_image)
                diffs[b.index].append((err_b - err_base).cpu())
                bar.update()
    finally:
        bar.close()
    rows = [_row(b, *_mean_stderr(torch.cat(diffs[b.index]))) for b in candidates]
    return assign_ranks(rows)


def iterative_elbo_importance(
    model: Denoiser,
    calib: CalibrationSet,
    reference: str = "data",
    skip_base: Iterable[int] = (),
    progress: bool = True,
    max_drops: int | None = None,
) -> list[dict]:
    """Greedy backward elimination: score all remaining blocks (`elbo_importance` with the dropped
    ones skipped), drop the least important, repeat. Costs ~K^2 / 2 block evaluations per sample.

    Returns the drop order: rows {index, kind, kind_index, params, score, stderr, rank, step}, where
    `step` is when the block was dropped (0 = first), `score`/`stderr` its importance at that moment
    (given the blocks dropped before), and rank = K - 1 - step (rank 0 = dropped last = most
    important; K = number of candidate blocks), so `plans.depth_plan` can use it directly.
    """
    dropped = list(_check_skip(model, skip_base, "skip_base"))
    num_candidates = model.num_blocks - len(dropped)
    steps = num_candidates if max_drops is None else max(0, min(int(max_drops), num_candidates))
    order = []
    for step in range(steps):
        rows = elbo_importance(model, calib, reference, skip_base=dropped, progress=progress)
        least = min(rows, key=lambda r: (r["score"], -r["index"]))
        order.append({**least, "rank": num_candidates - 1 - step, "step": step})
        dropped.append(least["index"])
    return order


# ---- metric-drop importance (VDMini / ICMD) ---------------------------------------------------
def metric_drop_importance(
    model: Denoiser,
    metric_fn: Callable[[Denoiser, frozenset], float],
    progress: bool = True,
    skip_base: Iterable[int] = (),
) -> list[dict]:
    """VDMini: score_b = metric(skip_base) - metric(skip_base + {b}) (the metric's drop; larger =
    more important). `metric_fn(model, skip) -> float`, higher = better. No standard error is
    known for an arbitrary metric (stderr = NaN). Rows also carry `metric` (with b skipped) and
    `metric_full` (without)."""
    skip_base = _check_skip(model, skip_base, "skip_base")
    candidates = [b for b in model.blocks if b.index not in skip_base]
    bar = _bar(len(candidates) + 1, progress, "metric-drop importance")
    try:
        full = float(metric_fn(model, skip_base))
        bar.update()
        rows = []
        for b in candidates:
            m = float(metric_fn(model, skip_base | {b.index}))
            rows.append({**_row(b, full - m, float("nan")), "metric": m, "metric_full": full})
            bar.update()
    finally:
        bar.close()
    return assign_ranks(rows)


# ---- rank correlation -------------------------------------------------------------------------
def rows_spearman(rows_a: list[dict], rows_b: list[dict]) -> float:
    """Spearman rank correlation (scipy.stats.spearmanr, ties averaged) of two importance row lists'
    scores over the blocks they share; NaN if either side is constant."""
    sa, sb = {r["index"]: r["score"] for r in rows_a}, {r["index"]: r["score"] for r in rows_b}
    common = sorted(set(sa) & set(sb))
    if len(common) < 2:
        raise InputError(f"a rank correlation needs at least 2 blocks in common, got {len(common)}")
    a, b = [sa[i] for i in common], [sb[i] for i in common]
    if len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(spearmanr(a, b).statistic)


# ---- importance.json --------------------------------------------------------------------------
def _clean_rows(rows: list[dict]) -> list[dict]:
    out = []
    for r in sorted(rows, key=lambda r: r["index"]):
        row = {k: r[k] for k in ROW_KEYS}
        row.update({k: v for k, v in r.items() if k not in row})  # e.g. step, metric
        out.append(row)
    return out


def write_importance(path: str | Path, model: Denoiser, rows: list[dict], meta: dict | None = None) -> Path:
    """Write importance.json atomically:

        {"fingerprint": model_fingerprint(model), "family", "method", "reference", "calib": {...},
         "blocks": [{"index", "kind", "kind_index", "params", "score", "stderr", "rank"}, ...],
         ...any further keys of `meta` (e.g. "data_free", "spearman_data_vs_data_free", "iterative")}

    rank 0 = most important. Non-finite numbers are written as null.
    """
    meta = dict(meta or {})
    doc = {
        "fingerprint": model_fingerprint(model),
        "family": model.family,
        "method": meta.pop("method", "elbo"),
        "reference": meta.pop("reference", "data"),
        "calib": meta.pop("calib", {}),
        "blocks": _clean_rows(rows),
    }
    for k, v in meta.items():
        doc[k] = {**v, "blocks": _clean_rows(v["blocks"])} if isinstance(v, dict) and "blocks" in v else v
    return atomic_write_json(path, doc)


def _validate_rows(rows, where: str, num_blocks: int | None) -> list[dict]:
    if not isinstance(rows, list) or not rows:
        raise InputError(f"{where}: 'blocks' must be a non-empty list; re-run fastlight analyze")
    seen = set()
    for r in rows:
        if not isinstance(r, dict) or any(k not in r for k in ROW_KEYS):
            raise InputError(f"{where}: every block entry needs keys {list(ROW_KEYS)}; re-run fastlight analyze")
        i = r["index"]
        if not isinstance(i, int) or isinstance(i, bool) or i < 0 or i in seen:
            raise InputError(f"{where}: block index {i!r} is not a new non-negative integer")
        if num_blocks is not None and i >= num_blocks:
            raise InputError(f"{where} names block {i} but the model has blocks 0..{num_blocks - 1}")
        if not isinstance(r["score"], (int, float)) or isinstance(r["score"], bool) or not math.isfinite(r["score"]):
            raise InputError(f"{where}: block {i} has no finite score ({r['score']!r})")
        seen.add(i)
        if r["stderr"] is None:
            r["stderr"] = float("nan")
    ranks = [r["rank"] for r in rows]
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in ranks) or len(set(ranks)) != len(ranks):
        raise InputError(f"{where}: ranks must be distinct non-negative integers (0 = most important), got {ranks}")
    return rows


def read_importance(path: str | Path, model: Denoiser | None = None) -> dict:
    """Read and validate importance.json; with `model`, refuse a file computed on another model.
    Returns the document (stderr null -> NaN)."""
    doc = read_json(path, "importance")
    for key in ("fingerprint", "family", "method", "blocks"):
        if key not in doc:
            raise InputError(f"importance file {path} lacks '{key}'; re-run fastlight analyze")
    if model is not None:
        check_fingerprint(doc, model, f"importance file {path}")
    n = None if model is None else model.num_blocks
    _validate_rows(doc["blocks"], f"importance file {path}", n)
    if model is not None:
        kinds = {b.index: b.kind for b in model.blocks}
        for r in doc["blocks"]:
            if r["kind"] != kinds[r["index"]]:
                raise InputError(f"importance file {path}: block {r['index']} is {r['kind']!r} there but "
                                 f"{kinds[r['index']]!r} in the model; re-run fastlight analyze")
    for key, v in doc.items():
        if key != "blocks" and isinstance(v, dict) and "blocks" in v:
            _validate_rows(v["blocks"], f"importance file {path} ({key})", n)
    return doc


def importance_rows(doc: dict, reference: str | None = None) -> list[dict]:
    """The block rows of a read importance document: None or the file's own reference -> "blocks";
    "self" -> the data-free rows ("data_free"); "iterative" -> the greedy drop order ("iterative")."""
    if reference in (None, doc.get("reference")):
        return doc["blocks"]
    if reference == "self" and "data_free" in doc:
        return doc["data_free"]["blocks"]
    if reference == "iterative" and "iterative" in doc:
        return doc["iterative"]["blocks"]
    hint = " --iterative" if reference == "iterative" else ""
    raise InputError(f"this importance file has no {reference!r} scores (it has {doc.get('reference')!r}); "
                     f"run fastlight analyze{hint}")


# ---- display -----------------------------------------------------------------------------------
def importance_table(rows: list[dict], title: str = "block importance"):
    """A rich Table: block, kind, params, score +- stderr, rank and a bar of the score."""
    table = Table(title=title)
    for col, just in (("block", "right"), ("kind", "left"), ("params", "right"), ("score", "right"),
                      ("± stderr", "right"), ("rank", "right"), ("", "left")):
        table.add_column(col, justify=just)
    top = max((abs(r["score"]) for r in rows), default=0.0) or 1.0
    for r in sorted(rows, key=lambda r: r["index"]):
        se = r.get("stderr")
        se_txt = "-" if se is None or not math.isfinite(se) else f"{se:.3g}"
        bar = "█" * int(round(10 * max(r["score"], 0.0) / top))
        table.add_row(str(r["index"]), f"{r['kind']}[{r['kind_index']}]", f"{r['params']:,}", f"{r['score']:.4g}",
                      se_txt, str(r["rank"]), bar)
    return table


_KIND_COLOURS = {"double": "tab:red", "single": "tab:blue", "wan": "tab:blue"}


def plot_importance(rows: list[dict], path: str | Path, title: str = "block importance",
                    ylabel: str = "importance (error increase)") -> Path:
    """PNG of score vs depth (block index) with stderr error bars, one colour per block kind
    (HunyuanVideo: double-stream red, single-stream blue). Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(rows) + 2), 3.6))
    try:
        kinds = list(dict.fromkeys(r["kind"] for r in sorted(rows, key=lambda r: r["index"])))
        for k, kind in enumerate(kinds):
            rs = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["index"])
            se = [r["stderr"] if r.get("stderr") is not None and math.isfinite(r["stderr"]) else 0.0 for r in rs]
            ax.errorbar([r["index"] for r in rs], [r["score"] for r in rs], yerr=se, fmt="o-", capsize=3, ms=4,
                        color=_KIND_COLOURS.get(kind, f"C{k}"), label=kind)
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xlabel("block (depth)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if len(kinds) > 1:
            ax.legend()
        return atomic_savefig(fig, path)
    finally:
        plt.close(fig)


# ---- `fastlight analyze` -----------------------------------------------------------------------
def _parse_methods(methods) -> tuple[str, ...]:
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    methods = tuple(dict.fromkeys(methods))
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise InputError(f"--methods must be a comma list of {', '.join(METHODS)}; got {list(methods)}")
    return methods


def build_metric(name: str, num_cases: int = 16, num_steps: int = 20, guidance: float = 4.0) -> Callable:
    """The video metric registered as `name` in the entry point group `fastlight.metrics` (or a
    `module:attr`), built with its generation settings: a callable (model, skip) -> float, higher =
    better, with a `description` (e.g. `shapes-oracle`, fastlight/shapes/analysis.py)."""
    return component("fastlight.metrics", name)(num_cases=num_cases, num_steps=num_steps, guidance=guidance)


def _metric_name(model: Denoiser, metric: str | None) -> str:
    name = metric or model_defaults(model).get("metric")
    if name is None:
        known = ", ".join(sorted(registered("fastlight.metrics"))) or "none"
        raise InputError("--methods metric needs a video metric and this model folder names none ('metric' in its "
                         f"fastlight.json, or a plug-in): pass --metric NAME (registered: {known}; or module:attr), "
                         "or call fastlight.analyze.importance.metric_drop_importance with your own metric_fn")
    return name


def compute_importance(
    model_path: str,
    calib: int = 64,
    out_dir: str = "runs/analyze",
    methods=("elbo",),
    iterative: bool = False,
    seed: int = 0,
    progress: bool = True,
    latents: str | None = None,
    batch_size: int | None = None,
    shift: float | None = None,
    device: str | None = None,
    metric_cases: int = 16,
    metric_steps: int = 20,
    metric_guidance: float = 4.0,
    data_free: bool = True,
    data: dict | str | None = None,
    metric: str | None = None,
) -> dict:
    """Stage I block (and width) importance of a model folder (`fastlight analyze MODEL --calib N`).

    Calibration (elbo, taylor): `calib.model_calibration` (`latents` file, else the `data` source,
    else the data source the model folder names). methods "elbo": ELBO importance with the data
    reference AND the data-free one, their Spearman correlation (data_free=False: the data reference
    only, half the time), out_dir/importance.json (data rows in "blocks", data-free rows in
    "data_free") and importance.png (+ importance_data_free.png); with `iterative` also the greedy
    drop order ("iterative" key). "taylor": Lightning Video width saliency -> taylor.json. "metric":
    VDMini metric-drop importance with the video metric `metric` (default: the one the model folder
    names, e.g. the Shapes oracle) -> importance_metric.json/.png. `progress`: a line saying what is
    analysed, and bars.

    Returns {"out_dir", "model", "num_blocks", "num_params", "calib" (the calibration set's info, or
    None), "files": {name: path}, and per method its rows: "rows" (ELBO, data), "rows_data_free",
    "spearman_data_vs_data_free", "iterative_order", "taylor" ({block: {"heads", "ffn", ...}}),
    "rows_metric", "metric" (its description), "spearman_metric_vs_elbo"}.
    """
    methods = _parse_methods(methods)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_denoiser(resolve_model_path(model_path), device).eval()
    metric_fn = None
    if "metric" in methods:  # before any long computation: a missing metric is bad input
        metric_fn = build_metric(_metric_name(model, metric), metric_cases, metric_steps, metric_guidance)
    check_dir_creatable(out_dir, "--out folder")  # before any work: a bad path fails in one line, at once
    cal = None
    if {"elbo", "taylor"} & set(methods):
        cal = model_calibration(model, calib, seed, data, latents, batch_size, shift)
    out = make_dir(out_dir, "--out folder")
    result: dict = {"out_dir": str(out), "model": str(model_path), "num_blocks": model.num_blocks,
                    "num_params": model.num_params(), "calib": cal.info if cal else None, "files": {}}
    if progress:
        drawn = f", {cal.num_samples} calibration samples ({cal.info['source']}, seed {seed})" if cal else ""
        print(f"analyze {model_path}: {model.num_blocks} blocks, {model.num_params():,} parameters{drawn}")

    if "elbo" in methods:
        rows_data = elbo_importance(model, cal, "data", progress=progress)
        meta = {"method": "elbo", "reference": "data", "calib": cal.info}
        if data_free:
            rows_free = elbo_importance(model, cal, "self", progress=progress)
            rho = rows_spearman(rows_data, rows_free)
            meta.update({"data_free": {"reference": "self", "blocks": rows_free}, "spearman_data_vs_data_free": rho})
        if iterative:
            order = iterative_elbo_importance(model, cal, "data", progress=progress)
            meta["iterative"] = {"reference": "data", "order": [r["index"] for r in order], "blocks": order}
            result["iterative_order"] = [r["index"] for r in order]
        result["files"]["importance"] = str(write_importance(out / "importance.json", model, rows_data, meta))
        result["files"]["plot"] = str(plot_importance(rows_data, out / "importance.png", "ELBO importance (data)"))
        if data_free:
            result["files"]["plot_data_free"] = str(
                plot_importance(rows_free, out / "importance_data_free.png", "ELBO importance (data-free)"))
            result["rows_data_free"] = rows_free
            result["spearman_data_vs_data_free"] = rho
        result["rows"] = rows_data

    if "taylor" in methods:
        scores = taylor_saliency(model, cal, progress=progress)
        result["taylor"] = scores
        result["files"]["taylor"] = str(write_taylor(out / "taylor.json", model, scores, {"calib": cal.info}))

    if metric_fn is not None:
        rows_m = metric_drop_importance(model, metric_fn, progress=progress)
        result["rows_metric"], result["metric"] = rows_m, metric_fn.description
        meta_m = {"method": "metric_drop", "reference": "metric", "calib": {"metric": metric_fn.description}}
        if "rows" in result:
            meta_m["spearman_vs_elbo_data"] = result["spearman_metric_vs_elbo"] = rows_spearman(rows_m, result["rows"])
        result["files"]["importance_metric"] = str(write_importance(out / "importance_metric.json", model, rows_m, meta_m))
        result["files"]["plot_metric"] = str(plot_importance(rows_m, out / "importance_metric.png", "metric-drop importance",
                                                                  "metric drop (full - skipped)"))
    return result
