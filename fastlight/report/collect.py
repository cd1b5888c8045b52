"""The rows of a report, collected from the files under a run folder.

What it reads (recursively under RUN_DIR, hidden files and the report's own folder skipped):
  * every ``shapesbench.json`` (``fastlight evaluate``): one table row each, named after its
    folder's path relative to RUN_DIR;
  * bench JSON (``fastlight bench --out``): ``bench.json`` or any JSON whose top-level "rows" is
    a list of rows carrying "speedup". A bench row is joined to a ShapesBench row when it timed the
    same model path with the same sampler, steps, CFG and skipped blocks;
  * ``importance.json`` / ``importance.png`` (``fastlight analyze``).

Only regular files inside RUN_DIR are read: symbolic links are not followed, and a path named inside
a JSON file (a ``*grid.gif``) that is absolute, holds ``..``, or leads outside RUN_DIR is not opened;
each is named under "skipped" (file + why), and the command says so.

Every JSON file it could not use as what its name says is named under "unreadable" (file + why: not
valid JSON, unreadable, over MAX_JSON_BYTES, a shapesbench.json without a score, an importance.json
without blocks), and the report lists them.

Dimension labels are re-derived from what the code computed (`vbench.dimension_kind`), not copied:
a built-in temporal flickering scored with the static filter is a proxy even in files written when it
was labelled exact; an official-backend score says "exact, not run here"; rows that disagree show
both kinds ("exact/proxy").

The baseline (the teacher: by default the row with the most work per video, NFE x DiT params)
comes first and everything is relative to it:
  * pruning ratio = 1 - params / params_full, params_full being the baseline's full DiT size when a
    row's own model is smaller (a model pruned by surgery counts as pruned against its teacher);
  * speedup = baseline median time / row median time, both from the same bench file ("measured");
    without such timing, the work ratio (NFE x params)_baseline / (NFE x params)_row ("NFE x params").
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from fastlight.errors import InputError
from fastlight.evaluate.vbench.dimensions import DIMENSIONS, dimension_kind

SHAPESBENCH_FILE = "shapesbench.json"
MAX_JSON_BYTES = 20 * 2**20  # bench files are small; don't parse big logs looking for one
PARTS = ("direction", "speed", "colour", "shape", "count", "sharpness")
# the VBench-style dimensions in the order the tables show them, with their column names
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


def finite_number(x) -> float | None:
    """x as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _load_json(path: Path) -> tuple[object, str | None]:
    """(the parsed document, None) or (None, why it could not be read)."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return None, f"over {MAX_JSON_BYTES // 2**20} MiB, not read"
        return json.loads(path.read_text()), None
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except ValueError as e:  # json.JSONDecodeError
        return None, f"not valid JSON ({str(e).splitlines()[0][:120]})"
    except OSError as e:
        return None, f"cannot be read ({type(e).__name__})"


def dim_kind(dim: str, entry: dict) -> str | None:
    """The label of one stored dimension score, from what computed it (module doc)."""
    if entry.get("backend") == "vbench":
        return "exact, not run here"
    if dim in DIMENSIONS:
        return dimension_kind(dim, entry.get("static_filter", True) is not False)
    return entry.get("kind")


def _dims_of(vb) -> dict:
    if not isinstance(vb, dict):
        return {}
    return {k: {"score": finite_number(v.get("score")), "kind": dim_kind(k, v)}
            for k, v in vb.items() if isinstance(v, dict) and "score" in v}


def _walk(root: Path, exclude: Path | None, skipped: list[dict]) -> list[Path]:
    """Every non-hidden regular file under root, sorted, leaving out `exclude` (the report's own
    folder). Symbolic links (files or folders) are not followed: each is named in `skipped`, so a
    link can never pull a file from outside the run folder into the report."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        keep = []
        for n in sorted(dirnames):
            if n.startswith("."):
                continue
            if exclude is not None and (d / n).resolve() == exclude:
                continue
            if (d / n).is_symlink():
                skipped.append({"file": _rel(d / n, root), "reason": "a symbolic link, not followed"})
                continue
            keep.append(n)
        dirnames[:] = keep
        for f in sorted(filenames):
            if f.startswith("."):
                continue
            if (d / f).is_symlink() or not (d / f).is_file():
                skipped.append({"file": _rel(d / f, root), "reason": "a symbolic link or not a regular file, not read"})
                continue
            out.append(d / f)
    return out


def inside_file(root: Path, folder: Path, name) -> tuple[Path | None, str | None]:
    """(the regular file `folder / name`, None) when `name`, a path read from a JSON file, is relative,
    has no '..' and names a regular file (no link on the way) inside `root`; else (None, why not)."""
    if not isinstance(name, str) or not name:
        return None, "not a file name"
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts:
        return None, "an absolute or '..' path named in a JSON file, not read (only files inside the run folder are)"
    path = folder
    for part in rel.parts:  # `folder` came from the walk (no link); no link below it either
        path = path / part
        if path.is_symlink():
            return None, "reached through a symbolic link, not read"
    if root.resolve() not in path.resolve().parents:
        return None, "outside the run folder, not read"
    if not path.is_file():
        return None, "not a regular file"
    return path, None


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


def _shapesbench_row(path: Path, root: Path, unreadable: list[dict], skipped: list[dict]) -> dict | None:
    doc, why = _load_json(path)
    if why is None and (not isinstance(doc, dict) or finite_number(doc.get("score")) is None):
        why = "not a ShapesBench result (no finite score)"
    if why is not None:
        unreadable.append({"file": _rel(path, root), "reason": why})
        return None
    folder = path.parent
    params, params_full, nfe = finite_number(doc.get("params")), finite_number(doc.get("params_full")), finite_number(doc.get("nfe_per_video"))
    vb = doc.get("vbench")
    dims = _dims_of(vb)
    ideal = doc.get("ideal") if isinstance(doc.get("ideal"), dict) else None
    grid = None
    files = doc.get("files") if isinstance(doc.get("files"), list) else []
    for f in [f for f in files if isinstance(f, str) and f.endswith("grid.gif")] + ["samples/grid.gif"]:
        found, why = inside_file(root, folder, f)
        if found is not None:
            grid = str(found)
            break
        if why != "not a regular file":  # a grid the JSON names that is not there is simply absent
            skipped.append({"file": f"{f} (named in {_rel(path, root)})", "reason": why})
    metrics = doc.get("metrics") if isinstance(doc.get("metrics"), dict) else {}
    return {
        "method": _rel(folder, root),
        "json": str(path),
        "model": doc.get("model"),
        "sampler": doc.get("sampler"),
        "steps": doc.get("num_steps"),
        "cfg": finite_number(doc.get("cfg_scale")),
        "skip": [int(i) for i in doc.get("skip") or []],
        "nfe": nfe,
        "params": params,
        "params_full": params_full,
        "num_cases": doc.get("num_cases"),
        "score": float(doc["score"]),
        "parts": {k: finite_number((doc.get("parts") or {}).get(k)) for k in PARTS},
        "psnr_db": finite_number(metrics.get("psnr_db")),
        "frechet_oracle": finite_number(metrics.get("frechet_oracle")),
        "dims": dims,
        "vbench_skipped": vb.get("skipped") if isinstance(vb, dict) and "skipped" in vb else None,
        "sample_time_s": finite_number(doc.get("sample_time_s")),
        "grid_gif": grid,
        "_ideal": ideal,
    }


def _bench_doc(path: Path, root: Path, unreadable: list[dict]) -> dict | None:
    doc, why = _load_json(path)
    if why is not None:
        unreadable.append({"file": _rel(path, root), "reason": why})
        return None
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
    return finite_number(t.get("median")) if isinstance(t, dict) else finite_number(t)


def _bench_matches(row: dict, b: dict) -> bool:
    if not (_same_model(row["model"], b.get("path")) or _same_model(row["model"], b.get("model"))):
        return False
    if row["sampler"] is not None and b.get("sampler") is not None and row["sampler"] != b["sampler"]:
        return False
    if row["steps"] is not None and b.get("steps") is not None and int(row["steps"]) != int(b["steps"]):
        return False
    cfg = finite_number(b.get("cfg"))
    if row["cfg"] is not None and cfg is not None and not math.isclose(row["cfg"], cfg):
        return False
    return sorted(int(i) for i in (b.get("skip") or [])) == sorted(row["skip"])


def _importance_entries(files: list[Path], root: Path, unreadable: list[dict]) -> list[dict]:
    by_dir: dict[Path, dict] = {}
    for f in files:
        if f.name in ("importance.json", "importance.png"):
            e = by_dir.setdefault(f.parent, {"method": _rel(f.parent, root), "json": None, "rel": None, "png": None,
                                              "doc": None})
            if f.suffix == ".png":
                e["png"] = str(f)
            else:
                doc, why = _load_json(f)
                if why is None and not (isinstance(doc, dict) and isinstance(doc.get("blocks"), list)):
                    why = "not an importance file (no blocks list)"
                if why is not None:
                    unreadable.append({"file": _rel(f, root), "reason": why})
                else:
                    e["json"], e["doc"], e["rel"] = str(f), doc, _rel(f, root)
    return [e for e in by_dir.values() if e["png"] or e["doc"]]


def _pick_baseline(rows: list[dict], baseline: str | None) -> int:
    if baseline is not None:
        for i, r in enumerate(rows):
            if r["method"] == baseline or r["method"].rstrip("/") == baseline.rstrip("/"):
                return i
        raise InputError(f"baseline {baseline!r} is not one of the methods found: {', '.join(r['method'] for r in rows)}")
    costs = [(r["nfe"] or 0) * (r["params"] or 0) for r in rows]
    return int(np.argmax(costs)) if any(costs) else 0



def _join_benches(rows: list[dict], benches: list[dict]) -> None:
    """row["bench"]: the first bench row (files in path order) that timed the same configuration."""
    for r in rows:
        r["bench"] = None
        for bi, b in enumerate(benches):
            hit = next((br for br in b["rows"] if _bench_matches(r, br)), None)
            if hit is not None and _median_time(hit) is not None:
                r["bench"] = {"file": b["file"], "index": bi, "model": hit.get("model"),
                              "time_s": _median_time(hit), "speedup_in_file": finite_number(hit.get("speedup")),
                              "peak_mem_mb": finite_number(hit.get("peak_mem_mb")), "device": hit.get("device")}
                break


def _relative_to_baseline(rows: list[dict]) -> None:
    """Pruning ratio, work, speedup (measured or work ratio) and time per video of every row
    against rows[0], the baseline (module doc)."""
    base = rows[0]
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


def _ideal_row(rows: list[dict]) -> dict | None:
    """The ideal clips (upper bound): the baseline's, else the first row that has one."""
    ideal = None
    for r in rows:
        d = r.pop("_ideal")
        if ideal is None and isinstance(d, dict) and finite_number(d.get("score")) is not None:
            m = d.get("metrics") if isinstance(d.get("metrics"), dict) else {}
            ideal = {"method": "ideal clips (upper bound)", "score": float(d["score"]),
                     "parts": {k: finite_number((d.get("parts") or {}).get(k)) for k in PARTS},
                     "psnr_db": finite_number(m.get("psnr_db")), "frechet_oracle": finite_number(m.get("frechet_oracle")),
                     "dims": _dims_of(d.get("vbench"))}
    return ideal


def _dimensions(rows: list[dict], ideal: dict | None) -> tuple[dict[str, str | None], list[str], list[str]]:
    """({dim: kind}, the dims shown (some row scored them), the dims averaged (every row with
    dims scored them)); sets each row's "dims_avg"."""
    kinds: dict[str, set] = {}
    for r in rows:
        for k, v in r["dims"].items():
            if v["score"] is not None:
                kinds.setdefault(k, set()).add(v["kind"])
    dims = {k: "/".join(sorted(str(x) for x in ks)) for k, ks in kinds.items()}
    order = list(DIM_NAMES)
    dim_list = sorted(dims, key=lambda k: (order.index(k) if k in order else len(order), k))
    scored = [r for r in rows if any(v["score"] is not None for v in r["dims"].values())]
    avg_dims = [d for d in dim_list if all(r["dims"].get(d, {}).get("score") is not None for r in scored)]
    for r in [*rows, *([ideal] if ideal else [])]:
        vals = [r["dims"].get(d, {}).get("score") for d in avg_dims]
        r["dims_avg"] = float(np.mean(vals)) if avg_dims and all(v is not None for v in vals) else None
    return dims, dim_list, avg_dims


def collect(run_dir: str | Path, baseline: str | None = None, exclude: str | Path | None = None) -> dict:
    """Everything the report shows, from the files under `run_dir` (module doc).

    Returns {"run_dir", "baseline", "rows": [...], "ideal", "dims", "avg_dims", "speedup_basis",
    "bench": [{file, path, meta, rows}], "importance": [{method, json, png, doc}]}. Rows come baseline
    first, then by method name; each row: method, json, model, sampler, steps, cfg, skip, nfe, params,
    params_full, prune_ratio, work, num_cases, score, parts, psnr_db, frechet_oracle,
    dims {dim: {score, kind}}, dims_avg, sample_time_s, time_s, time_source, bench, speedup,
    speedup_kind, speedup_work, grid_gif; "unreadable": [{file, reason}] (module doc). `exclude`: a
    folder to leave out of the search. One-line ValueError when there is no ShapesBench result
    (naming the files that could not be read).
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise InputError(f"run folder {root} does not exist")
    excl = Path(exclude).resolve() if exclude is not None else None
    skipped: list[dict] = []
    files = _walk(root, excl, skipped)
    unreadable: list[dict] = []
    rows = [r for r in (_shapesbench_row(f, root, unreadable, skipped) for f in files if f.name == SHAPESBENCH_FILE)
            if r is not None]
    if not rows:
        bad = "".join(f"; could not read {u['file']} ({u['reason']})" for u in unreadable[:5])
        raise InputError(f"no shapesbench.json under {root}{bad}; run fastlight evaluate first")
    benches = [b for b in (_bench_doc(f, root, unreadable) for f in files if f.suffix == ".json"
                           and f.name != SHAPESBENCH_FILE and f.name != "importance.json") if b is not None]
    importance = _importance_entries(files, root, unreadable)
    rows.sort(key=lambda r: r["method"])
    rows.insert(0, rows.pop(_pick_baseline(rows, baseline)))
    _join_benches(rows, benches)
    _relative_to_baseline(rows)
    ideal = _ideal_row(rows)
    dims, dim_list, avg_dims = _dimensions(rows, ideal)
    return {
        "run_dir": str(root),
        "baseline": rows[0]["method"],
        "rows": rows,
        "ideal": ideal,
        "dims": [{"name": d, "kind": dims[d]} for d in dim_list],
        "avg_dims": avg_dims,
        "speedup_basis": MEASURED if all(r["speedup_kind"] == MEASURED for r in rows) else WORK,
        "bench": benches,
        "importance": importance,
        "unreadable": sorted(unreadable, key=lambda u: u["file"]),
        "skipped": sorted(skipped, key=lambda u: u["file"]),
    }
