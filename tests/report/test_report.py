"""fastlight.report: collect a fake run folder (hand-written shapesbench.json, bench JSON, importance.json,
tiny grid GIFs) and write the Markdown / HTML / JSON report. No model is run."""
import json
import re

import numpy as np
import pytest
import torch

from fastlight.data.video import grid, read_video, to_uint8_frames, write_video
from fastlight.report import build_report, collect
from fastlight.report.samples import side_by_side_gif, split_grid

F, H, N = 5, 8, 3  # frames, clip size, cases per grid
PALETTE = torch.tensor([[-1.0, -1.0, -1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])


def _videos(seed: int, n: int = N) -> torch.Tensor:
    """(n, 3, F, H, W) in [-1, 1] from a 4-colour palette (exact in a GIF palette)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(PALETTE), (n, F, H, H), generator=g)
    return PALETTE[idx].permute(0, 4, 1, 2, 3).contiguous()


IDEAL = _videos(999)


def _grid_gif(path, seed: int):
    """Like shapesbench.save_samples: top row generated, bottom row the (shared) ideal clips."""
    g = grid(torch.cat([_videos(seed), IDEAL]), ncols=N)
    return write_video(path, to_uint8_frames(g, 2), 4)


def _sb(model, sampler, steps, cfg, skip, nfe, params, params_full, score, dims=True, files=True):
    parts = {"direction": score, "speed": 0.7, "colour": 0.9, "shape": 0.8, "count": 1.0, "sharpness": 0.95}
    vb = ({"subject_consistency": {"score": 0.9 + score / 10, "kind": "proxy", "per_video": []},
           "temporal_flickering": {"score": 0.97, "kind": "exact", "per_video": [], "static_filter": False},
           "aesthetic_quality": {"score": None, "kind": "n/a", "per_video": []}}
          if dims else {"skipped": "not requested"})
    return {"benchmark": "shapesbench", "version": 1, "model": model, "sampler": sampler, "num_steps": steps,
            "cfg_scale": cfg, "skip": skip, "num_cases": 8, "nfe_per_video": nfe, "params": params,
            "params_full": params_full, "sample_time_s": 16.0, "score": score, "weights": {}, "parts": parts,
            "metrics": {"psnr_db": 20.0, "frechet_oracle": 1.5}, "vbench": vb,
            "ideal": {"score": 0.996, "parts": parts, "metrics": {"psnr_db": 100.0, "frechet_oracle": 0.0},
                      "vbench": {"subject_consistency": {"score": 0.99, "kind": "proxy"},
                                 "temporal_flickering": {"score": 0.98, "kind": "exact", "static_filter": False}}},
            "files": ["samples/grid.gif"] if files else [], "per_video": []}


def _bench_row(model, path, sampler, steps, cfg, skip, nfe, params, median, speedup):
    return {"model": model, "path": path, "sampler": sampler, "steps": steps, "cfg": cfg, "skip": skip,
            "batch_size": 1, "nfe": nfe, "dit_params": params,
            "time_s": {"median": median, "min": median * 0.9, "max": median * 1.2, "runs": [median]},
            "text_s": 0.001, "denoise_s": median * 0.9, "decode_s": 0.002, "peak_mem_mb": 300.0,
            "mem_method": "VmHWM", "speedup": speedup, "device": "cpu"}


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    _write(root / "teacher" / "shapesbench.json",
           _sb("runs/teacher", "euler", 50, 4.0, [], 100, 1_000_000, 1_000_000, 0.80))
    _write(root / "student4" / "shapesbench.json",
           _sb("runs/student", "few_step", 4, 1.0, [5, 3, 4], 4, 700_000, 1_000_000, 0.78))
    # a model pruned by surgery: its own full size is already 700K; no timing for it
    _write(root / "baselines" / "static" / "shapesbench.json",
           _sb("runs/static", "euler", 50, 4.0, [], 100, 700_000, 700_000, 0.60, dims=False))
    for i, name in enumerate(["teacher", "student4", "baselines/static"]):
        _grid_gif(root / name / "samples" / "grid.gif", i)
    _write(root / "bench" / "bench.json", {"device": "cpu", "batch_size": 1, "repeats": 3, "rows": [
        _bench_row("runs/teacher", "runs/teacher", "euler", 50, 4.0, [], 100, 1_000_000, 2.0, 1.0),
        _bench_row("runs/student:steps=4", "./runs/student/", "few_step", 4, 1.0, [3, 4, 5], 4, 700_000, 0.05, 40.0),
        _bench_row("runs/static:steps=8", "runs/static", "euler", 8, 4.0, [], 16, 700_000, 0.3, 6.7),  # other config
    ]})
    _write(root / "train" / "metrics.json", {"rows": [{"loss": 1.0}]})  # not a bench file: no speedup
    _write(root / "analyze" / "importance.json", {
        "fingerprint": "x", "family": "wan", "method": "elbo", "reference": "data",
        "blocks": [{"index": i, "kind": "wan", "kind_index": i, "params": 1000, "score": s, "stderr": 0.01, "rank": r}
                   for i, (s, r) in enumerate([(0.9, 0), (0.1, 3), (0.2, 2), (0.5, 1)])]})
    report = build_report(root, progress=False)
    assert report.unreadable is None  # every JSON under root was readable
    return root, report.markdown, report.html


def _table_lines(md: str, heading: str) -> list[str]:
    sec = md.split(f"## {heading}\n", 1)[1]
    return [ln for ln in sec.splitlines() if ln.startswith("|")][: 2 + 4]


def test_collect_rows_join_speedup_and_pruning(run):
    root, _, _ = run
    data = collect(root, exclude=root / "report")
    rows = {r["method"]: r for r in data["rows"]}
    assert [r["method"] for r in data["rows"]] == ["teacher", "baselines/static", "student4"]  # baseline first
    assert data["baseline"] == "teacher"
    assert [rows[m]["prune_ratio"] for m in ("teacher", "student4", "baselines/static")] == pytest.approx([0, 0.3, 0.3])
    assert rows["teacher"]["speedup"] == pytest.approx(1.0) and rows["teacher"]["speedup_kind"] == "measured"
    assert rows["student4"]["speedup"] == pytest.approx(40.0) and rows["student4"]["speedup_kind"] == "measured"
    assert rows["student4"]["time_s"] == pytest.approx(0.05) and rows["student4"]["time_source"] == "bench"
    # the bench row for runs/static has 8 steps, not 50: no join, work ratio instead
    assert rows["baselines/static"]["bench"] is None
    assert rows["baselines/static"]["speedup"] == pytest.approx(100 * 1e6 / (100 * 7e5))
    assert rows["baselines/static"]["speedup_kind"] == "NFE x params"
    assert rows["student4"]["speedup_work"] == pytest.approx(100 * 1e6 / (4 * 7e5))
    assert data["speedup_basis"] == "NFE x params"
    assert [d["name"] for d in data["dims"]] == ["subject_consistency", "temporal_flickering"]  # n/a dropped
    assert data["avg_dims"] == ["subject_consistency", "temporal_flickering"]  # over the rows that have dims
    assert rows["baselines/static"]["dims_avg"] is None
    assert rows["student4"]["dims_avg"] == pytest.approx((0.978 + 0.97) / 2)
    assert len(data["bench"]) == 1 and len(data["importance"]) == 1
    # choosing another baseline rebases everything
    data2 = collect(root, baseline="student4", exclude=root / "report")
    assert data2["rows"][0]["method"] == "student4"
    t = {r["method"]: r for r in data2["rows"]}["teacher"]
    assert t["speedup"] == pytest.approx(0.025)


def test_markdown_comparison_table(run):
    _, md_path, _ = run
    md = md_path.read_text()
    lines = _table_lines(md, "Comparison")
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["Method", "Steps", "NFE", "Pruning", "Subject consistency (proxy)", "Temporal flickering (exact)",
                      "Average", "ShapesBench", "Time / video", "Speedup"]
    body = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    assert [r[0] for r in body] == ["teacher", "baselines/static", "student4", "ideal clips (upper bound)"]
    by = {r[0]: r for r in body}
    assert by["teacher"][1:4] == ["50", "100", "0%"] and by["teacher"][-1] == "1.00x"
    assert by["student4"][1:4] == ["4", "4", "30%"] and by["student4"][-1] == "40.00x"
    assert by["student4"][-3] == "0.780" and by["student4"][-2] == "50.0 ms"
    assert by["baselines/static"][3] == "30%" and by["baselines/static"][-1] == "1.43x ‡"
    assert by["baselines/static"][-2].endswith("†")  # evaluate time, not a bench latency
    assert by["student4"][4:7] == ["97.80", "97.00", "97.40"]  # dims and their average in %
    assert by["baselines/static"][4:7] == ["-", "-", "-"]
    assert "![Pareto plot](pareto.png)" in md and "![samples](samples.gif)" in md
    assert "tables/comparison.json" in md and "## Latency (fastlight bench)" in md
    assert "## Block importance (Stage I)" in md and "importance-analyze.png" in md


def test_html_self_contained(run):
    root, _, html_path = run
    text = html_path.read_text()
    assert text.count("data:image/png;base64,") >= 2  # pareto + importance
    assert text.count("data:image/gif;base64,") == 1
    stripped = re.sub(r"data:[a-z/]+;base64,[A-Za-z0-9+/=]+", "", text)
    assert "http" not in stripped and "<script" not in stripped
    assert not re.search(r'src="(?!data:)', text)
    assert "<table>" in stripped and "student4" in stripped


def test_files_json_pareto_and_gif(run):
    root, _, _ = run
    out = root / "report"
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "importance-analyze.png").exists()
    doc = json.loads((out / "report.json").read_text())
    assert "rows" not in doc  # never mistaken for a bench file on a rerun
    comp = {r["method"]: r for r in doc["tables"]["comparison"]["data"]}
    assert comp["student4"]["prune_ratio"] == pytest.approx(0.3) and comp["student4"]["speedup"] == pytest.approx(40)
    assert set(doc["tables"]) == {"comparison", "shapesbench-parts", "timing-bench-bench", "importance-analyze"}
    for name, rel in doc["files"]["tables"].items():
        assert json.loads((out / rel).read_text())["title"] == doc["tables"][name]["title"]
    assert len(doc["tables"]["timing-bench-bench"]["data"]) == 3
    frames = read_video(out / "samples.gif")
    assert frames.shape[0] == F
    assert doc["samples_gif"]["ideal_once"] is True and doc["samples_gif"]["num_frames"] == F
    # 3 generated halves + the ideal clips once, each under a label strip
    gh = H * 2  # one row of clips at upscale 2
    assert frames.shape[1] == 4 * (18 + gh)
    assert not any(p.name.startswith(".") for p in out.rglob("*"))  # no temporary files left
    # a rerun does not pick up its own output
    build_report(root, progress=False)
    assert len(json.loads((out / "report.json").read_text())["tables"]["comparison"]["data"]) == 4


def test_gif_without_split_keeps_whole_grids(tmp_path):
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 200, (3, 10, 12, 3), dtype=np.uint8) for _ in range(2))
    assert split_grid(a) is None
    write_video(tmp_path / "a.gif", a, 4)
    write_video(tmp_path / "b.gif", np.concatenate([b, b[:1]]), 4)  # 4 frames: padded to the longest
    info = side_by_side_gif([("a", str(tmp_path / "a.gif")), ("b", str(tmp_path / "b.gif"))], tmp_path / "s.gif")
    assert info["ideal_once"] is False and info["num_frames"] == 4
    assert read_video(tmp_path / "s.gif").shape[:2] == (4, 2 * (18 + 10))


def test_empty_run_dir_error(tmp_path):
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "shapesbench.json", {"benchmark": "shapesbench"})  # no score: not a result
    with pytest.raises(ValueError, match=r"^no shapesbench.json under .*; run fastlight evaluate first$"):
        build_report(tmp_path, progress=False)
    assert not (tmp_path / "report").exists()
    with pytest.raises(ValueError, match="does not exist"):
        collect(tmp_path / "missing")


def test_real_evaluate_outputs(tiny_shapes_model, tmp_path):
    """Two 2-step ShapesBench runs of the tiny model (2 cases, no VBench), then the report."""
    from fastlight.shapes.bench import evaluate_model

    evaluate_model(str(tiny_shapes_model), tmp_path / "teacher", overrides={"num_steps": 2, "guidance": 4.0},
                   num_cases=2, vbench=False)
    evaluate_model(str(tiny_shapes_model), tmp_path / "student", overrides={"sampler": "few_step", "num_steps": 2},
                   num_cases=2, skip=(1,), vbench=False)
    md = build_report(tmp_path, progress=False).markdown
    data = collect(tmp_path, exclude=tmp_path / "report")
    assert [r["method"] for r in data["rows"]] == ["teacher", "student"]
    student = data["rows"][1]
    assert student["nfe"] == 2 and 0 < student["prune_ratio"] < 1 and student["speedup_kind"] == "NFE x params"
    assert student["speedup"] == pytest.approx(4 * student["params_full"] / (2 * student["params"]))
    doc = json.loads((tmp_path / "report" / "report.json").read_text())
    assert doc["samples_gif"]["ideal_once"] is True  # the real grids share their ideal half
    assert read_video(tmp_path / "report" / "samples.gif").shape[0] == 8  # the tiny world's frames
    assert "| student | 2 | 2 |" in md.read_text()


def test_tables_show_intervals_and_the_ghost_part(tmp_path):
    """A ShapesBench 2 result: the comparison's score and every part carry their 95% intervals."""
    from fastlight.report.tables import comparison_table, shapesbench_table

    doc = _sb("runs/teacher", "euler", 50, 4.0, [], 100, 1_000_000, 1_000_000, 0.80)
    doc["parts"]["ghost"] = 0.75
    doc["weights"] = {"direction": 0.3, "ghost": 0.1}
    doc["intervals"] = {"score": {"estimate": 0.8, "low": 0.78, "high": 0.83},
                        "parts": {"direction": {"estimate": 0.8, "low": 0.7, "high": 0.9},
                                  "ghost": {"estimate": 0.75, "low": 0.6, "high": 0.86}}}
    _write(tmp_path / "teacher" / "shapesbench.json", doc)
    _write(tmp_path / "old" / "shapesbench.json", _sb("runs/old", "euler", 50, 4.0, [], 100, 10, 10, 0.7))
    data = collect(tmp_path)
    comp = comparison_table(data)
    by = {row[0]: row for row in comp["cells"]}
    assert "0.800 [0.780, 0.830]" in by["teacher"] and "0.700" in by["old"]  # a version-1 file: no interval
    assert comp["rows"][0]["score_interval"]["low"] == 0.78 and any("95% bootstrap" in n for n in comp["notes"])
    parts = shapesbench_table(data)
    keys = [c["key"] for c in parts["columns"]]
    assert "ghost" in keys
    row = dict(zip(keys, next(r for r in parts["cells"] if r[0] == "teacher")))
    assert row["direction"] == "0.800 ±0.100" and row["ghost"] == "0.750 ±0.130"
    assert row["score"] == "0.800 [0.780, 0.830]" and "wrap-around" in " ".join(parts["notes"])
