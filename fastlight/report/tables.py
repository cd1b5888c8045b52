"""The report's tables: each a title, typed columns, the raw rows (for JSON) and display cells."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from fastlight.report.collect import DIM_NAMES, MEASURED, PARTS, WORK, finite_number

# parts ShapesBench 2 adds to those collect knows (shown when a result has them)
EXTRA_PARTS = ("ghost",)
INTERVAL_NOTE = ("[a, b] = 95% bootstrap interval over the cases (percentile, seeded; ShapesBench 2); "
                 "± = half its width. Two rows on the same cases and noise are compared with a paired interval "
                 "of their difference (fastlight.shapes.bench.paired_intervals), not by whether these overlap.")


def fmt(x, spec: str, none: str = "-") -> str:
    """x formatted with `spec`, or `none` when x is None."""
    return none if x is None else format(x, spec)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _params(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def _secs(x) -> str:
    return "-" if x is None else (f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s")


def _shapesbench_doc(r: dict) -> dict:
    """What a row's shapesbench.json says beyond collect's row: intervals and ShapesBench 2 parts
    ({} for a result without them or a file that cannot be read)."""
    if "intervals" in r:
        return {"intervals": r["intervals"], "parts": r.get("parts") or {}}
    try:
        doc = json.loads(Path(r["json"]).read_text()) if r.get("json") else {}
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _intervals(r: dict) -> dict:
    iv = _shapesbench_doc(r).get("intervals")
    return iv if isinstance(iv, dict) else {}


def _with_interval(x, iv: dict | None, spec: str = ".3f") -> str:
    """'0.905 [0.893, 0.917]' (or '0.905' without an interval)."""
    if x is None:
        return "-"
    if not iv or finite_number(iv.get("low")) is None or finite_number(iv.get("high")) is None:
        return format(x, spec)
    return f"{x:{spec}} [{iv['low']:{spec}}, {iv['high']:{spec}}]"


def _with_half_width(x, iv: dict | None) -> str:
    """'0.912 ±0.012'."""
    if x is None:
        return "-"
    if not iv or finite_number(iv.get("low")) is None or finite_number(iv.get("high")) is None:
        return f"{x:.3f}"
    return f"{x:.3f} ±{(iv['high'] - iv['low']) / 2:.3f}"


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
                    "sampler": r["sampler"], "cfg": r["cfg"], "skip": r["skip"],
                    "score_interval": _intervals(r).get("score"), "num_cases": r.get("num_cases")})
        t = _secs(r["time_s"]) + (" †" if r["time_source"] == "evaluate" else "")
        sp = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x" + (" ‡" if r["speedup_kind"] == WORK else "")
        cells.append([r["method"], fmt(r["steps"], "d"), fmt(r["nfe"], ".0f"), fmt(r["prune_ratio"], ".0%")]
                     + [_pct(r["dims"].get(d["name"], {}).get("score")) for d in dims]
                     + ([_pct(r["dims_avg"])] if dims else [])
                     + [_with_interval(r["score"], _intervals(r).get("score")), t, sp])
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
    notes.append("ShapesBench = the Shapes world's oracle score in [0, 1] (higher is better)"
                 + (f"; {INTERVAL_NOTE}" if any(_intervals(r).get("score") for r in data["rows"]) else "."))
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
    """The parts of every row's score, each with the half-width of its 95% interval, and the score
    with its interval (when the result carries them: ShapesBench 2)."""
    docs = [_shapesbench_doc(r) for r in data["rows"]]
    extra = [k for k in EXTRA_PARTS if k not in PARTS and any(k in (d.get("parts") or {}) for d in docs)]
    parts = list(PARTS) + extra
    cols = [("method", "Method", "l")] + [(k, k, "r") for k in parts] + [
        ("score", "score", "r"), ("psnr_db", "PSNR dB", "r"), ("frechet_oracle", "Frechet (oracle)", "r"),
        ("sampler", "sampler", "l"), ("cfg", "CFG", "r"), ("skip", "skipped blocks", "l"),
        ("params", "DiT params", "r"), ("sample_time_s", "eval time", "r")]
    raw, cells = [], []
    entries = list(data["rows"]) + ([data["ideal"]] if data["ideal"] else [])
    ideal_doc = (docs[0].get("ideal") if docs and isinstance(docs[0].get("ideal"), dict) else {}) or {}
    for r, doc in zip(entries, docs + [ideal_doc]):
        is_ideal = r is data["ideal"]
        iv = doc.get("intervals") if isinstance(doc.get("intervals"), dict) else {}
        iv_parts = iv.get("parts") or {}
        values = {k: r["parts"].get(k, (doc.get("parts") or {}).get(k)) for k in parts}
        raw.append({"method": r["method"], **values, "score": r["score"], "intervals": iv or None,
                    "psnr_db": r["psnr_db"], "frechet_oracle": r["frechet_oracle"],
                    **({} if is_ideal else {"sampler": r["sampler"], "cfg": r["cfg"], "skip": r["skip"],
                                            "params": r["params"], "sample_time_s": r["sample_time_s"],
                                            "num_cases": r["num_cases"], "json": r["json"]})})
        tail = ["-"] * 5 if is_ideal else [
            r["sampler"] or "-", fmt(r["cfg"], "g"), ",".join(map(str, r["skip"])) or "-", _params(r["params"]),
            _secs(r["sample_time_s"])]
        cells.append([r["method"]] + [_with_half_width(values[k], iv_parts.get(k)) for k in parts]
                     + [_with_interval(r["score"], iv.get("score")), fmt(r["psnr_db"], ".2f"),
                        fmt(r["frechet_oracle"], ".3g")] + tail)
    weights = next((d.get("weights") for d in docs if d.get("weights")), None)
    wtext = ", ".join(f"{k} {w:.2f}" for k, w in weights.items()) if weights else (
        "direction 0.35, speed 0.15, colour 0.15, shape 0.10, count 0.10, sharpness 0.15")
    notes = [f"Parts of the ShapesBench score (weights: {wtext}); PSNR and the oracle Frechet distance are "
             "reported, not ranked. eval time = ShapesBench's total sampling time for all its cases."]
    if any(d.get("intervals") for d in docs):
        notes.append(INTERVAL_NOTE)
    if "ghost" in parts:
        notes.append("ghost = fraction of clips in which the oracle saw no pixels of an object's colour away from "
                     "it (duplicates, wrap-around copies at the opposite border, smears); a clip with one fails.")
    return _table("ShapesBench parts", cols, raw, cells, notes)


def timing_table(bench: dict) -> dict:
    cols = [("model", "Model", "l"), ("sampler", "Sampler", "l"), ("steps", "Steps", "r"), ("cfg", "CFG", "r"),
            ("nfe", "NFE", "r"), ("dit_params", "DiT params", "r"), ("median", "Median", "r"),
            ("range", "Min - max", "r"), ("text_s", "Text", "r"), ("denoise_s", "Denoise", "r"),
            ("decode_s", "Decode", "r"), ("peak_mem_mb", "Peak mem", "r"), ("speedup", "Speedup", "r")]
    cells = []
    for r in bench["rows"]:
        t = r.get("time_s") if isinstance(r.get("time_s"), dict) else {}
        mem = finite_number(r.get("peak_mem_mb"))
        sp = finite_number(r.get("speedup"))
        cells.append([str(r.get("model", "-")), str(r.get("sampler", "-")), str(r.get("steps", "-")),
                      fmt(finite_number(r.get("cfg")), "g"), str(r.get("nfe", "-")), _params(finite_number(r.get("dit_params"))),
                      _secs(finite_number(t.get("median"))), f"{_secs(finite_number(t.get('min')))} - {_secs(finite_number(t.get('max')))}",
                      _secs(finite_number(r.get("text_s"))), _secs(finite_number(r.get("denoise_s"))), _secs(finite_number(r.get("decode_s"))),
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
    cells = [[str(b.get("index")), f"{b.get('kind', '-')}[{b.get('kind_index', '-')}]", fmt(finite_number(b.get("params")), ",.0f"),
              fmt(finite_number(b.get("score")), ".4g"), fmt(finite_number(b.get("stderr")), ".3g"), str(b.get("rank", "-"))]
             for b in blocks]
    doc = entry["doc"]
    least = [b.get("index") for b in sorted(blocks, key=lambda b: -(b.get("rank") or 0))][:8]
    notes = [f"{entry['rel']}: method {doc.get('method', '?')}, reference {doc.get('reference', '?')}; rank 0 = most "
             f"important. Least important first: {least}."]
    return _table(f"Block importance ({entry['method']})", cols, blocks, cells, notes)

