"""`fastlight report RUN_DIR`: one Markdown + one self-contained HTML report of a run folder.

What it reads (recursively under RUN_DIR, hidden files and the report's own folder skipped):
  * every ``shapesbench.json`` (``fastlight evaluate``): one table row each, named after its
    folder's path relative to RUN_DIR;
  * bench JSON (``fastlight bench --out``): ``bench.json`` or any JSON whose top-level "rows" is
    a list of rows carrying "speedup". A bench row is joined to a ShapesBench row when it timed the
    same model path with the same sampler, steps, CFG and skipped blocks;
  * ``importance.json`` / ``importance.png`` (``fastlight analyze``).

The baseline (the teacher: by default the row with the most work per video, NFE x DiT params)
comes first and everything is relative to it:
  * pruning ratio = 1 - params / params_full, params_full being the baseline's full DiT size when a
    row's own model is smaller (a model pruned by surgery counts as pruned against its teacher);
  * speedup = baseline median time / row median time, both from the same bench file ("measured");
    without such timing, the work ratio (NFE x params)_baseline / (NFE x params)_row ("NFE x params").

What it writes (into OUT, default RUN_DIR/report; every file atomically: temporary file + rename):
  report.md       tables in Markdown, relative image links
  report.html     the same, self-contained: images and GIFs as base64 data URIs, inline CSS
  report.json     every table's data ({"tables": {name: {title, columns, rows}}, ...})
  tables/*.json   one file per table, linked under the table
  pareto.png      ShapesBench score vs speedup, labelled points, Pareto frontier
  samples.gif     the rows' samples/grid.gif stacked (same cases and seeds for every model: the
                  ShapesBench cases are fixed), a label strip above each; when every grid's lower
                  half (the world's ideal clips) is the same, it is shown once at the bottom
  importance*.png copies of the importance plots found (drawn from importance.json if no PNG)
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from fastlight.fileio import atomic_write_bytes, atomic_write_text

REPORT_DIR = "report"
SHAPESBENCH_FILE = "shapesbench.json"
MAX_JSON_BYTES = 20 * 2**20  # bench files are small; don't parse big logs looking for one
PARTS = ("direction", "speed", "colour", "shape", "count", "sharpness")
DIM_NAMES = {
    "subject_consistency": "Subject consistency",
    "background_consistency": "Background consistency",
    "temporal_flickering": "Temporal flickering",
    "motion_smoothness": "Motion smoothness",
    "dynamic_degree": "Dynamic degree",
    "aesthetic_quality": "Aesthetic quality",
    "imaging_quality": "Imaging quality",
    "i2v_subject": "I2V subject",
    "i2v_background": "I2V background",
}
MEASURED = "measured"
WORK = "NFE x params"
LABEL_STRIP_PX = 18


# ---- small helpers ----------------------------------------------------------------------------
def _atomic_bytes(path: Path, data: bytes) -> Path:
    return atomic_write_bytes(path, data)


def _atomic_text(path: Path, text: str) -> Path:
    return atomic_write_text(path, text)


def _clean(obj):
    """JSON-safe: non-finite floats -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _atomic_json(path: Path, obj) -> Path:
    return _atomic_text(path, json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n")


def _num(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _load_json(path: Path):
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return None
        return json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _walk(root: Path, exclude: Path | None) -> list[Path]:
    """Every non-hidden file under root, sorted, leaving out `exclude` (the report's own folder)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        keep = []
        for n in sorted(dirnames):
            if n.startswith("."):
                continue
            if exclude is not None and (d / n).resolve() == exclude:
                continue
            keep.append(n)
        dirnames[:] = keep
        out += [d / f for f in sorted(filenames) if not f.startswith(".")]
    return out


def _rel(path: Path, root: Path) -> str:
    rel = os.path.relpath(path, root)
    return root.resolve().name if rel == "." else rel.replace(os.sep, "/")


def _norm_model_path(p) -> tuple[str, str] | None:
    if not isinstance(p, str) or not p.strip():
        return None
    p = p.strip()
    return os.path.normpath(p), os.path.normpath(os.path.abspath(os.path.expanduser(p)))


def _same_model(a, b) -> bool:
    na, nb = _norm_model_path(a), _norm_model_path(b)
    return na is not None and nb is not None and (na[0] == nb[0] or na[1] == nb[1])


# ---- collection ---------------------------------------------------------------------------------
def _shapesbench_row(path: Path, root: Path) -> dict | None:
    doc = _load_json(path)
    if not isinstance(doc, dict) or _num(doc.get("score")) is None:
        return None
    folder = path.parent
    params, params_full, nfe = _num(doc.get("params")), _num(doc.get("params_full")), _num(doc.get("nfe_per_video"))
    dims = {}
    vb = doc.get("vbench")
    if isinstance(vb, dict):
        for k, v in vb.items():
            if isinstance(v, dict) and "score" in v:
                dims[k] = {"score": _num(v.get("score")), "kind": v.get("kind")}
    ideal = doc.get("ideal") if isinstance(doc.get("ideal"), dict) else None
    grid = None
    files = doc.get("files") if isinstance(doc.get("files"), list) else []
    for f in [f for f in files if isinstance(f, str) and f.endswith("grid.gif")] + ["samples/grid.gif"]:
        if (folder / f).is_file():
            grid = str(folder / f)
            break
    metrics = doc.get("metrics") if isinstance(doc.get("metrics"), dict) else {}
    return {
        "method": _rel(folder, root),
        "json": str(path),
        "model": doc.get("model"),
        "sampler": doc.get("sampler"),
        "steps": doc.get("num_steps"),
        "cfg": _num(doc.get("cfg_scale")),
        "skip": [int(i) for i in doc.get("skip") or []],
        "nfe": nfe,
        "params": params,
        "params_full": params_full,
        "num_cases": doc.get("num_cases"),
        "score": float(doc["score"]),
        "parts": {k: _num((doc.get("parts") or {}).get(k)) for k in PARTS},
        "psnr_db": _num(metrics.get("psnr_db")),
        "frechet_oracle": _num(metrics.get("frechet_oracle")),
        "dims": dims,
        "vbench_skipped": vb.get("skipped") if isinstance(vb, dict) and "skipped" in vb else None,
        "sample_time_s": _num(doc.get("sample_time_s")),
        "grid_gif": grid,
        "_ideal": ideal,
    }


def _bench_doc(path: Path, root: Path) -> dict | None:
    doc = _load_json(path)
    if not isinstance(doc, dict):
        return None
    rows = doc.get("rows")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        return None
    if not all("speedup" in r for r in rows):
        return None
    meta = {k: doc.get(k) for k in ("device", "gpu", "batch_size", "repeats", "torch", "mem_method") if k in doc}
    return {"file": _rel(path, root), "path": str(path), "meta": meta, "rows": rows}


def _median_time(b: dict) -> float | None:
    t = b.get("time_s")
    return _num(t.get("median")) if isinstance(t, dict) else _num(t)


def _bench_matches(row: dict, b: dict) -> bool:
    if not (_same_model(row["model"], b.get("path")) or _same_model(row["model"], b.get("model"))):
        return False
    if row["sampler"] is not None and b.get("sampler") is not None and row["sampler"] != b["sampler"]:
        return False
    if row["steps"] is not None and b.get("steps") is not None and int(row["steps"]) != int(b["steps"]):
        return False
    cfg = _num(b.get("cfg"))
    if row["cfg"] is not None and cfg is not None and not math.isclose(row["cfg"], cfg):
        return False
    return sorted(int(i) for i in (b.get("skip") or [])) == sorted(row["skip"])


def _importance_entries(files: list[Path], root: Path) -> list[dict]:
    by_dir: dict[Path, dict] = {}
    for f in files:
        if f.name in ("importance.json", "importance.png"):
            e = by_dir.setdefault(f.parent, {"method": _rel(f.parent, root), "json": None, "rel": None, "png": None,
                                              "doc": None})
            if f.suffix == ".png":
                e["png"] = str(f)
            else:
                doc = _load_json(f)
                if isinstance(doc, dict) and isinstance(doc.get("blocks"), list):
                    e["json"], e["doc"], e["rel"] = str(f), doc, _rel(f, root)
    return [e for e in by_dir.values() if e["png"] or e["doc"]]


def _pick_baseline(rows: list[dict], baseline: str | None) -> int:
    if baseline is not None:
        for i, r in enumerate(rows):
            if r["method"] == baseline or r["method"].rstrip("/") == baseline.rstrip("/"):
                return i
        raise ValueError(f"baseline {baseline!r} is not one of the methods found: {', '.join(r['method'] for r in rows)}")
    costs = [(r["nfe"] or 0) * (r["params"] or 0) for r in rows]
    return int(np.argmax(costs)) if any(costs) else 0


def collect(run_dir: str | Path, baseline: str | None = None, exclude: str | Path | None = None) -> dict:
    """Everything the report shows, from the files under `run_dir` (module doc).

    Returns {"run_dir", "baseline", "rows": [...], "ideal", "dims", "avg_dims", "speedup_basis",
    "bench": [{file, path, meta, rows}], "importance": [{method, json, png, doc}]}. Rows come baseline
    first, then by method name; each row: method, json, model, sampler, steps, cfg, skip, nfe, params,
    params_full, prune_ratio, work, num_cases, score, parts, psnr_db, frechet_oracle,
    dims {dim: {score, kind}}, dims_avg, sample_time_s, time_s, time_source, bench, speedup,
    speedup_kind, speedup_work, grid_gif. `exclude`: a folder to leave out of the search.
    One-line ValueError when there is no ShapesBench result.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise ValueError(f"run folder {root} does not exist")
    excl = Path(exclude).resolve() if exclude is not None else None
    files = _walk(root, excl)
    rows = [r for r in (_shapesbench_row(f, root) for f in files if f.name == SHAPESBENCH_FILE) if r is not None]
    if not rows:
        raise ValueError(f"no shapesbench.json under {root}; run fastlight evaluate first")
    benches = [b for b in (_bench_doc(f, root) for f in files if f.suffix == ".json" and f.name != SHAPESBENCH_FILE
                           and f.name != "importance.json") if b is not None]
    rows.sort(key=lambda r: r["method"])
    b0 = _pick_baseline(rows, baseline)
    rows.insert(0, rows.pop(b0))
    base = rows[0]

    # join bench rows (first bench file in path order wins)
    for r in rows:
        r["bench"] = None
        for bi, b in enumerate(benches):
            hit = next((br for br in b["rows"] if _bench_matches(r, br)), None)
            if hit is not None and _median_time(hit) is not None:
                r["bench"] = {"file": b["file"], "index": bi, "model": hit.get("model"),
                              "time_s": _median_time(hit), "speedup_in_file": _num(hit.get("speedup")),
                              "peak_mem_mb": _num(hit.get("peak_mem_mb")), "device": hit.get("device")}
                break

    # pruning ratio, work, speedup
    ref_full = base["params_full"]
    base_work = (base["nfe"] or 0) * (base["params"] or 0)
    for r in rows:
        full = r["params_full"]
        if ref_full is not None and (full is None or full < ref_full):
            full = ref_full
        r["prune_ratio"] = (1.0 - r["params"] / full) if r["params"] is not None and full else None
        r["work"] = (r["nfe"] * r["params"]) if r["nfe"] is not None and r["params"] is not None else None
        r["speedup_work"] = base_work / r["work"] if r["work"] and base_work else None
        bb, rb = base["bench"], r["bench"]
        if bb is not None and rb is not None and bb["file"] == rb["file"] and rb["time_s"] > 0:
            r["speedup"], r["speedup_kind"] = bb["time_s"] / rb["time_s"], MEASURED
        else:
            r["speedup"], r["speedup_kind"] = r["speedup_work"], WORK if r["speedup_work"] is not None else None
        if rb is not None:
            r["time_s"], r["time_source"] = rb["time_s"], "bench"
        elif r["sample_time_s"] is not None and r["num_cases"]:
            r["time_s"], r["time_source"] = r["sample_time_s"] / r["num_cases"], "evaluate"
        else:
            r["time_s"], r["time_source"] = None, None
    all_measured = all(r["speedup_kind"] == MEASURED for r in rows)

    # the ideal clips (upper bound): the baseline's, else the first row that has one
    ideal = None
    for r in rows:
        d = r.pop("_ideal")
        if ideal is None and isinstance(d, dict) and _num(d.get("score")) is not None:
            vb = d.get("vbench") if isinstance(d.get("vbench"), dict) else {}
            m = d.get("metrics") if isinstance(d.get("metrics"), dict) else {}
            ideal = {"method": "ideal clips (upper bound)", "score": float(d["score"]),
                     "parts": {k: _num((d.get("parts") or {}).get(k)) for k in PARTS},
                     "psnr_db": _num(m.get("psnr_db")), "frechet_oracle": _num(m.get("frechet_oracle")),
                     "dims": {k: {"score": _num(v.get("score")), "kind": v.get("kind")}
                              for k, v in vb.items() if isinstance(v, dict) and "score" in v}}

    # VBench-style dimensions: shown when some row scored them; the average uses the dims every row has
    dims: dict[str, str | None] = {}
    for r in rows:
        for k, v in r["dims"].items():
            if v["score"] is not None:
                dims.setdefault(k, v["kind"])
    order = list(DIM_NAMES)
    dim_list = sorted(dims, key=lambda k: (order.index(k) if k in order else len(order), k))
    scored = [r for r in rows if any(v["score"] is not None for v in r["dims"].values())]
    avg_dims = [d for d in dim_list if all(r["dims"].get(d, {}).get("score") is not None for r in scored)]
    for r in [*rows, *([ideal] if ideal else [])]:
        vals = [r["dims"].get(d, {}).get("score") for d in avg_dims]
        r["dims_avg"] = float(np.mean(vals)) if avg_dims and all(v is not None for v in vals) else None
    return {
        "run_dir": str(root),
        "baseline": base["method"],
        "rows": rows,
        "ideal": ideal,
        "dims": [{"name": d, "kind": dims[d]} for d in dim_list],
        "avg_dims": avg_dims,
        "speedup_basis": MEASURED if all_measured else WORK,
        "bench": benches,
        "importance": _importance_entries(files, root),
    }


# ---- tables -----------------------------------------------------------------------------------------
def _f(x, fmt: str, none: str = "-") -> str:
    return none if x is None else format(x, fmt)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _params(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def _secs(x) -> str:
    return "-" if x is None else (f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s")


def _table(title: str, columns: list[tuple[str, str, str]], data: list[dict], cells: list[list[str]],
           notes: Sequence[str] = ()) -> dict:
    """columns: (key, header, align 'l'|'r'); data: the raw rows (JSON); cells: the display strings."""
    return {"title": title, "columns": [{"key": k, "header": h, "align": a} for k, h, a in columns],
            "rows": data, "cells": cells, "notes": list(notes)}


def comparison_table(data: dict) -> dict:
    """The paper's comparison table: method, steps, pruning, each dimension, average, time, speedup."""
    dims = data["dims"]
    cols = [("method", "Method", "l"), ("steps", "Steps", "r"), ("nfe", "NFE", "r"),
            ("prune_ratio", "Pruning", "r")]
    cols += [(f"dim:{d['name']}", f"{DIM_NAMES.get(d['name'], d['name'])} ({d['kind']})", "r") for d in dims]
    if dims:
        cols.append(("dims_avg", "Average", "r"))
    cols += [("score", "ShapesBench", "r"), ("time_s", "Time / video", "r"), ("speedup", "Speedup", "r")]
    raw, cells = [], []
    for r in data["rows"]:
        raw.append({"method": r["method"], "steps": r["steps"], "nfe": r["nfe"], "prune_ratio": r["prune_ratio"],
                    **{f"dim:{d['name']}": r["dims"].get(d["name"], {}).get("score") for d in dims},
                    "dims_avg": r["dims_avg"], "score": r["score"], "time_s": r["time_s"],
                    "time_source": r["time_source"], "speedup": r["speedup"], "speedup_kind": r["speedup_kind"],
                    "speedup_work": r["speedup_work"], "params": r["params"], "params_full": r["params_full"],
                    "sampler": r["sampler"], "cfg": r["cfg"], "skip": r["skip"]})
        t = _secs(r["time_s"]) + (" †" if r["time_source"] == "evaluate" else "")
        sp = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x" + (" ‡" if r["speedup_kind"] == WORK else "")
        cells.append([r["method"], _f(r["steps"], "d"), _f(r["nfe"], ".0f"), _f(r["prune_ratio"], ".0%")]
                     + [_pct(r["dims"].get(d["name"], {}).get("score")) for d in dims]
                     + ([_pct(r["dims_avg"])] if dims else [])
                     + [f"{r['score']:.3f}", t, sp])
    ideal = data["ideal"]
    if ideal is not None:
        raw.append({"method": ideal["method"], **{f"dim:{d['name']}": ideal["dims"].get(d["name"], {}).get("score")
                                                  for d in dims}, "dims_avg": ideal["dims_avg"], "score": ideal["score"]})
        cells.append([ideal["method"], "-", "-", "-"] + [_pct(ideal["dims"].get(d["name"], {}).get("score"))
                                                          for d in dims]
                     + ([_pct(ideal["dims_avg"])] if dims else []) + [f"{ideal['score']:.3f}", "-", "-"])
    base = data["rows"][0]["method"]
    notes = [f"Baseline (first row): {base}. Pruning = 1 - DiT parameters / the full DiT's parameters "
             "(the baseline's when a model was made smaller by surgery). NFE = network evaluations per video "
             "(x2 with classifier-free guidance)."]
    if dims:
        avg = (f"Average = mean over the {len(data['avg_dims'])} dimension(s) scored for every method that has "
               "dimensions: " + ", ".join(data["avg_dims"]) + "." if data["avg_dims"] else
               "No dimension is scored for every method, so there is no average.")
        notes.append("VBench-style dimensions in % (fastlight.evaluate.vbench): exact = VBench's own formula, "
                     "proxy = VBench's protocol with a weight-free estimator in place of its network; - = not "
                     "computed. " + avg)
    else:
        notes.append("No VBench-style dimensions were computed (run fastlight evaluate without --no-vbench).")
    notes.append("ShapesBench = the Shapes world's oracle score in [0, 1] (higher is better).")
    if any(r["time_source"] == "bench" for r in data["rows"]):
        notes.append("Time = median seconds per video from fastlight bench.")
    if any(r["time_source"] == "evaluate" for r in data["rows"]):
        notes.append("† no bench timing for this row: ShapesBench's batched sampling time / number of cases "
                     "(not a latency measurement).")
    if any(r["speedup_kind"] == MEASURED for r in data["rows"]):
        notes.append(f"Speedup = {base}'s median time / the row's, from the same bench file.")
    if any(r["speedup_kind"] == WORK for r in data["rows"]):
        notes.append(f"‡ no matching timing: work ratio (NFE x DiT params of {base}) / (NFE x DiT params of the row).")
    return _table("Comparison", cols, raw, cells, notes)


def shapesbench_table(data: dict) -> dict:
    cols = [("method", "Method", "l")] + [(k, k, "r") for k in PARTS] + [
        ("score", "score", "r"), ("psnr_db", "PSNR dB", "r"), ("frechet_oracle", "Frechet (oracle)", "r"),
        ("sampler", "sampler", "l"), ("cfg", "CFG", "r"), ("skip", "skipped blocks", "l"),
        ("params", "DiT params", "r"), ("sample_time_s", "eval time", "r")]
    raw, cells = [], []
    entries = list(data["rows"]) + ([data["ideal"]] if data["ideal"] else [])
    for r in entries:
        is_ideal = r is data["ideal"]
        raw.append({"method": r["method"], **{k: r["parts"].get(k) for k in PARTS}, "score": r["score"],
                    "psnr_db": r["psnr_db"], "frechet_oracle": r["frechet_oracle"],
                    **({} if is_ideal else {"sampler": r["sampler"], "cfg": r["cfg"], "skip": r["skip"],
                                            "params": r["params"], "sample_time_s": r["sample_time_s"],
                                            "num_cases": r["num_cases"], "json": r["json"]})})
        tail = ["-"] * 5 if is_ideal else [
            r["sampler"] or "-", _f(r["cfg"], "g"), ",".join(map(str, r["skip"])) or "-", _params(r["params"]),
            _secs(r["sample_time_s"])]
        cells.append([r["method"]] + [_f(r["parts"].get(k), ".3f") for k in PARTS]
                     + [f"{r['score']:.3f}", _f(r["psnr_db"], ".2f"), _f(r["frechet_oracle"], ".3g")] + tail)
    notes = ["Parts of the ShapesBench score (weights: direction 0.35, speed 0.15, colour 0.15, shape 0.10, "
             "count 0.10, sharpness 0.15); PSNR and the oracle Frechet distance are reported, not ranked. "
             "eval time = ShapesBench's total sampling time for all its cases."]
    return _table("ShapesBench parts", cols, raw, cells, notes)


def timing_table(bench: dict) -> dict:
    cols = [("model", "Model", "l"), ("sampler", "Sampler", "l"), ("steps", "Steps", "r"), ("cfg", "CFG", "r"),
            ("nfe", "NFE", "r"), ("dit_params", "DiT params", "r"), ("median", "Median", "r"),
            ("range", "Min - max", "r"), ("text_s", "Text", "r"), ("denoise_s", "Denoise", "r"),
            ("decode_s", "Decode", "r"), ("peak_mem_mb", "Peak mem", "r"), ("speedup", "Speedup", "r")]
    cells = []
    for r in bench["rows"]:
        t = r.get("time_s") if isinstance(r.get("time_s"), dict) else {}
        mem = _num(r.get("peak_mem_mb"))
        sp = _num(r.get("speedup"))
        cells.append([str(r.get("model", "-")), str(r.get("sampler", "-")), str(r.get("steps", "-")),
                      _f(_num(r.get("cfg")), "g"), str(r.get("nfe", "-")), _params(_num(r.get("dit_params"))),
                      _secs(_num(t.get("median"))), f"{_secs(_num(t.get('min')))} - {_secs(_num(t.get('max')))}",
                      _secs(_num(r.get("text_s"))), _secs(_num(r.get("denoise_s"))), _secs(_num(r.get("decode_s"))),
                      "-" if mem is None else f"{mem:.0f} MiB", "-" if sp is None else f"{sp:.2f}x"])
    m = bench["meta"]
    where = ", ".join(f"{k} {m[k]}" for k in ("device", "gpu", "batch_size", "repeats") if m.get(k) is not None)
    notes = [f"From {bench['file']}" + (f" ({where})" if where else "") + "; seconds per video; speedup against "
             "the file's first row."]
    return _table(f"Latency ({bench['file']})", cols, [dict(r) for r in bench["rows"]], cells, notes)


def importance_table(entry: dict) -> dict:
    cols = [("index", "Block", "r"), ("kind", "Kind", "l"), ("params", "Params", "r"), ("score", "Score", "r"),
            ("stderr", "± stderr", "r"), ("rank", "Rank", "r")]
    blocks = sorted(entry["doc"]["blocks"], key=lambda b: b.get("index", 0))
    cells = [[str(b.get("index")), f"{b.get('kind', '-')}[{b.get('kind_index', '-')}]", _f(_num(b.get("params")), ",.0f"),
              _f(_num(b.get("score")), ".4g"), _f(_num(b.get("stderr")), ".3g"), str(b.get("rank", "-"))]
             for b in blocks]
    doc = entry["doc"]
    least = [b.get("index") for b in sorted(blocks, key=lambda b: -(b.get("rank") or 0))][:8]
    notes = [f"{entry['rel']}: method {doc.get('method', '?')}, reference {doc.get('reference', '?')}; rank 0 = most "
             f"important. Least important first: {least}."]
    return _table(f"Block importance ({entry['method']})", cols, blocks, cells, notes)


# ---- plots and animations ---------------------------------------------------------------------------
def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both x and y (higher is better), by increasing x."""
    idx = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in idx:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return sorted(front, key=lambda i: points[i][0])


def pareto_plot(data: dict, path: str | Path) -> Path:
    """ShapesBench score vs speedup (log x), one labelled point per row, the frontier as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastlight.analyze.io import atomic_savefig

    measured = data["speedup_basis"] == MEASURED
    rows = [r for r in data["rows"] if (r["speedup"] if measured else r["speedup_work"]) is not None]
    pts = [((r["speedup"] if measured else r["speedup_work"]), r["score"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    try:
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
    finally:
        plt.close(fig)


def split_grid(frames: np.ndarray, white: int = 245) -> tuple[np.ndarray, np.ndarray] | None:
    """A ShapesBench grid.gif (F, H, W, 3) is two rows (generated on top, the ideal clips below) with a
    white band between them; returns (top, bottom) when such a band splits it into equal halves."""
    F, H = frames.shape[:2]
    is_white = frames.min(axis=(0, 2, 3)) >= white  # (H,) rows white in every frame
    y = 0
    while y < H:
        if not is_white[y]:
            y += 1
            continue
        a = y
        while y < H and is_white[y]:
            y += 1
        if a > 0 and a == H - y and y - a < a:
            return frames[:, :a], frames[:, y:]
    return None


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def label_width(text: str, height: int = LABEL_STRIP_PX) -> int:
    """Pixels a label strip needs to show `text` whole."""
    font = _font(height - 6)
    try:
        return int(math.ceil(font.getlength(text))) + 8
    except AttributeError:  # very old Pillow
        return 7 * len(text) + 8


def label_strip(text: str, width: int, height: int = LABEL_STRIP_PX) -> np.ndarray:
    """(height, width, 3) uint8: dark text on a light strip."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (235, 235, 235))
    ImageDraw.Draw(img).text((4, 2), text, fill=(20, 20, 20), font=_font(height - 6))
    return np.asarray(img)


def _pad_to(frames: np.ndarray, num_frames: int, width: int) -> np.ndarray:
    F, H, W, _ = frames.shape
    if W < width:
        frames = np.concatenate([frames, np.full((F, H, width - W, 3), 255, np.uint8)], axis=2)
    if F < num_frames:
        frames = np.concatenate([frames, np.repeat(frames[-1:], num_frames - F, axis=0)])
    return frames[:num_frames]


def _gif_duration_ms(path: str) -> int:
    try:
        from PIL import Image

        with Image.open(path) as im:
            return int(im.info.get("duration") or 250)
    except Exception:  # unreadable metadata: ShapesBench's 4 fps
        return 250


def side_by_side_gif(items: Sequence[tuple[str, str]], path: str | Path, ideal_tol: float = 8.0) -> dict:
    """Stack the grid GIFs `items` = [(label, gif path), ...] vertically, a label strip above each.

    When every grid splits into generated / ideal halves and the ideal halves agree (mean abs
    difference <= ideal_tol, GIF palettes differ), only the generated halves are stacked and the ideal
    clips are shown once at the bottom. Returns {path, num_frames, shape, ideal_once, fps}."""
    from fastlight.data.video import read_video, write_video

    if not items:
        raise ValueError("no grid GIFs to combine")
    vids = [read_video(p) for _, p in items]
    halves = [split_grid(v) for v in vids]
    ideal_once = all(h is not None for h in halves) and len({h[1].shape for h in halves}) == 1 and all(
        float(np.abs(h[1][:min(len(h[1]), len(halves[0][1]))].astype(np.float32)
                     - halves[0][1][:min(len(h[1]), len(halves[0][1]))].astype(np.float32)).mean()) <= ideal_tol
        for h in halves)
    parts = [(label, h[0] if ideal_once else v) for (label, _), h, v in zip(items, halves, vids)]
    if ideal_once:
        parts.append(("ideal clips (the world's rendering of the same cases)", halves[0][1]))
    F = max(p.shape[0] for _, p in parts)
    W = max(max(p.shape[2] for _, p in parts), max(label_width(label) for label, _ in parts))
    blocks = []
    for label, p in parts:
        strip = np.repeat(label_strip(label, W)[None], F, axis=0)
        blocks += [strip, _pad_to(p, F, W)]
    frames = np.ascontiguousarray(np.concatenate(blocks, axis=1))
    ms = _gif_duration_ms(items[0][1])
    fps = max(1, round(1000 / ms))
    write_video(path, frames, fps)
    return {"path": str(path), "num_frames": int(F), "shape": list(frames.shape), "ideal_once": bool(ideal_once),
            "fps": fps}


# ---- Markdown / HTML rendering ----------------------------------------------------------------------
def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def table_markdown(t: dict, json_link: str | None = None) -> str:
    cols = t["columns"]
    lines = ["| " + " | ".join(_md_cell(c["header"]) for c in cols) + " |",
             "|" + "|".join("---:" if c["align"] == "r" else ":---" for c in cols) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t["cells"]]
    out = "\n".join(lines) + "\n"
    for n in t["notes"]:
        out += f"\n{n}\n"
    if json_link:
        out += f"\nData: [{json_link}]({json_link})\n"
    return out


def table_html(t: dict, json_link: str | None = None) -> str:
    cols = t["columns"]
    head = "".join(f'<th class="{c["align"]}">{html.escape(c["header"])}</th>' for c in cols)
    body = "".join("<tr>" + "".join(f'<td class="{c["align"]}">{html.escape(str(v))}</td>' for c, v in zip(cols, row))
                   + "</tr>\n" for row in t["cells"])
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in t["notes"])
    link = f'<p class="note">Data: <a href="{html.escape(json_link)}">{html.escape(json_link)}</a></p>' if json_link else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>{notes}{link}\n"


def data_uri(path: str | Path) -> str:
    path = Path(path)
    mime = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}[path.suffix.lower()]
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 7px; white-space: nowrap; }
th { background: #f1f1f1; } tbody tr:nth-child(even) { background: #fafafa; }
td.r, th.r { text-align: right; } td.l, th.l { text-align: left; }
p.note { font-size: 0.8em; color: #555; margin: 0.25em 0; }
img { max-width: 100%; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0 3px; }
"""


# ---- the command ------------------------------------------------------------------------------------
def _slug(s: str) -> str:
    out = "".join(c if c.isalnum() or c in "-_" else "-" for c in s).strip("-")
    return out or "run"


def _unique(name: str, used: set) -> str:
    n, k = name, 2
    while n in used:
        n, k = f"{name}-{k}", k + 1
    used.add(n)
    return n


def report_command(run_dir: str | Path, out: str | Path | None = None, title: str | None = None,
                   baseline: str | None = None, progress: bool = True) -> tuple[Path, Path]:
    """`fastlight report RUN_DIR [--out DIR] [--title TEXT] [--baseline METHOD]`: write report.md,
    report.html, report.json, tables/*.json, pareto.png, samples.gif (and copies of the importance
    plots) into `out` (default RUN_DIR/report). Returns (md_path, html_path)."""
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / REPORT_DIR
    bar = tqdm(total=6, desc="report", unit="step", disable=not progress)

    def step(what: str):
        bar.set_postfix_str(what)
        bar.update(1)

    try:
        bar.set_postfix_str("collect")
        data = collect(run_dir, baseline=baseline, exclude=out)
        title = title or f"fastlight report: {run_dir.resolve().name}"
        out.mkdir(parents=True, exist_ok=True)
        step("tables")

        # (no table file is named shapesbench.json: a report inside a run folder must not look like a result)
        tables: dict[str, dict] = {"comparison": comparison_table(data), "shapesbench-parts": shapesbench_table(data)}
        used = set(tables)
        timing_names, importance_names = [], []
        for b in data["bench"]:
            n = _unique("timing-" + _slug(Path(b["file"]).with_suffix("").as_posix()), used)
            tables[n] = timing_table(b)
            timing_names.append(n)
        imp_pngs: list[tuple[str, Path]] = []
        for e in data["importance"]:
            slug = _slug(e["method"])
            if e["doc"] is not None:
                n = _unique("importance-" + slug, used)
                tables[n] = importance_table(e)
                importance_names.append(n)
            dst = out / f"importance-{slug}.png"
            if e["png"]:
                _atomic_bytes(dst, Path(e["png"]).read_bytes())
                imp_pngs.append((e["method"], dst))
            elif e["doc"] is not None:
                from fastlight.analyze.importance import plot_importance

                try:
                    plot_importance(e["doc"]["blocks"], dst, f"block importance ({e['method']})")
                    imp_pngs.append((e["method"], dst))
                except (KeyError, TypeError, ValueError):
                    pass  # a malformed file still gets its table
        links = {}
        for n, t in tables.items():
            _atomic_json(out / "tables" / f"{n}.json", {"title": t["title"], "columns": t["columns"], "data": t["rows"],
                                                        "notes": t["notes"]})
            links[n] = f"tables/{n}.json"
        step("pareto plot")

        pareto = pareto_plot(data, out / "pareto.png")
        step("side-by-side GIF")

        grids = []
        for r in data["rows"]:
            if r["grid_gif"]:
                label = f"{r['method']} | {r['steps']} steps | NFE {_f(r['nfe'], '.0f')} | " \
                        f"pruned {_f(r['prune_ratio'], '.0%')} | ShapesBench {r['score']:.3f}"
                grids.append((label, r["grid_gif"]))
        gif_info = side_by_side_gif(grids, out / "samples.gif") if grids else None
        missing = [r["method"] for r in data["rows"] if not r["grid_gif"]]
        step("markdown + html")

        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        intro = (f"Run folder `{run_dir}`; {len(data['rows'])} evaluated configuration(s); baseline "
                 f"`{data['baseline']}`; generated {stamp} by `fastlight report`.")
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

        md = [f"# {title}\n", intro + "\n"]
        body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>"]
        for head, tnames, images, caption in sections:
            md.append(f"\n## {head}\n")
            body.append(f"<h2>{html.escape(head)}</h2>")
            for alt, p in images:
                rel = os.path.relpath(p, out).replace(os.sep, "/")
                md.append(f"![{alt}]({rel})\n")
                body.append(f'<p><img alt="{html.escape(alt)}" src="{data_uri(p)}"></p>')
            if caption:
                md.append(f"\n{caption}\n")
                body.append(f'<p class="note">{html.escape(caption)}</p>')
            for n in tnames:
                t = tables[n]
                if len(tnames) > 1 or t["title"] != head:
                    md.append(f"\n### {t['title']}\n")
                    body.append(f"<h3>{html.escape(t['title'])}</h3>")
                md.append("\n" + table_markdown(t, links[n]))
                body.append(table_html(t, links[n]))
        md_text = "\n".join(md)
        html_text = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                     f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
                     + "\n".join(body) + "\n</body></html>\n")
        step("write")

        files = {"markdown": "report.md", "html": "report.html", "pareto": "pareto.png",
                 "samples": "samples.gif" if gif_info else None,
                 "importance": [os.path.relpath(p, out) for _, p in imp_pngs], "tables": links}
        _atomic_json(out / "report.json", {
            "title": title, "run_dir": str(run_dir), "generated": stamp, "baseline": data["baseline"],
            "speedup_basis": data["speedup_basis"], "dims": data["dims"], "avg_dims": data["avg_dims"],
            "tables": {n: {"title": t["title"], "columns": t["columns"], "data": t["rows"], "notes": t["notes"]}
                       for n, t in tables.items()},
            "samples_gif": gif_info and {k: v for k, v in gif_info.items() if k != "path"},
            "sources": {"shapesbench": [r["json"] for r in data["rows"]], "bench": [b["path"] for b in data["bench"]],
                        "importance": [{"json": e["json"], "png": e["png"]} for e in data["importance"]]},
            "files": files,
        })
        md_path = _atomic_text(out / "report.md", md_text)
        html_path = _atomic_text(out / "report.html", html_text)
        step("done")
    finally:
        bar.close()
    print(f"report written to {md_path} and {html_path}")
    return md_path, html_path


# ---- CLI helpers (the dispatch lives in fastlight/cli.py) ------------------------------------------------
def add_arguments(p) -> None:
    """The arguments of `fastlight report` on an argparse (sub)parser."""
    p.add_argument("run_dir", help="folder searched recursively for shapesbench.json, bench JSON and importance files")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/report)")
    p.add_argument("--title", default=None, help="report title (default: 'fastlight report: <run folder name>')")
    p.add_argument("--baseline", default=None,
                   help="method (folder path relative to RUN_DIR) to compare against (default: the most NFE x params)")


def run_from_args(a) -> tuple[Path, Path]:
    return report_command(a.run_dir, a.out, a.title, a.baseline)
