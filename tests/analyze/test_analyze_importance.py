import json
import math

import pytest
import torch
from safetensors.torch import save_file

from analyze_helpers import IDENTITY, wan_cond

from fastlight.analyze.importance import (
    compute_importance,
    denoising_error,
    elbo_importance,
    iterative_elbo_importance,
    metric_drop_importance,
    plot_importance,
    read_importance,
    rows_spearman,
    write_importance,
)
from fastlight.shapes.analysis import OracleMetric
from fastlight.models.load import load_denoiser
from fastlight.models.wan import WanDenoiser, tiny_wan_config


def _scores(rows):
    return {r["index"]: r["score"] for r in rows}


def test_common_random_numbers_give_identical_scores(wan, wan_calib):
    a = elbo_importance(wan, wan_calib, "data", progress=False)
    b = elbo_importance(wan, wan_calib, "data", progress=False)
    assert a == b
    assert [r["index"] for r in a] == [0, 1, 2, 3]
    assert sorted(r["rank"] for r in a) == [0, 1, 2, 3]
    assert all(r["stderr"] > 0 for r in a)  # real blocks: the per-sample differences vary


def test_identity_block_scores_zero_and_ranks_last(wan_identity, wan_calib):
    data = elbo_importance(wan_identity, wan_calib, "data", progress=False)
    free = elbo_importance(wan_identity, wan_calib, "self", progress=False)
    ident = {r["index"]: r for r in data}[IDENTITY]
    assert abs(ident["score"]) < 1e-12 and ident["stderr"] < 1e-12
    ident_free = {r["index"]: r for r in free}[IDENTITY]
    assert ident_free["score"] == 0.0  # data-free: skipping a no-op block changes nothing, exactly
    assert ident_free["rank"] == 3  # last (least important)
    others = [r for r in free if r["index"] != IDENTITY]
    assert all(r["score"] > 0 and r["stderr"] > 0 for r in others)
    # the data reference ranks by |effect on the error|, which may be negative for random weights
    assert all(r["score"] != 0 for r in data if r["index"] != IDENTITY)


def test_skip_base_excludes_blocks_and_rescores(wan, wan_calib):
    rows = elbo_importance(wan, wan_calib, "self", skip_base=[1], progress=False)
    assert [r["index"] for r in rows] == [0, 2, 3]
    with pytest.raises(ValueError, match="names block 9"):
        elbo_importance(wan, wan_calib, skip_base=[9], progress=False)
    with pytest.raises(ValueError, match="reference"):
        elbo_importance(wan, wan_calib, reference="teacher", progress=False)


def test_first_frame_excluded_for_ti2v():
    x0 = torch.zeros(2, 3, 4, 5, 5)
    x0_hat = x0.clone()
    x0_hat[:, :, 0] = 7.0  # only the (clean-image) first frame differs
    assert torch.equal(denoising_error(x0_hat, x0, has_image=True), torch.zeros(2, dtype=torch.float64))
    assert (denoising_error(x0_hat, x0, has_image=False) > 0).all()


def test_iterative_returns_full_drop_order(wan_identity, wan_calib):
    order = iterative_elbo_importance(wan_identity, wan_calib, "self", progress=False)
    assert sorted(r["index"] for r in order) == [0, 1, 2, 3]
    assert [r["step"] for r in order] == [0, 1, 2, 3]
    assert [r["rank"] for r in order] == [3, 2, 1, 0]
    assert order[0]["index"] == IDENTITY and order[0]["score"] == 0.0
    partial = iterative_elbo_importance(wan_identity, wan_calib, "self", progress=False, max_drops=2)
    assert [r["index"] for r in partial] == [r["index"] for r in order[:2]]


def test_hunyuan_elbo(hunyuan, hunyuan_calib):
    rows = elbo_importance(hunyuan, hunyuan_calib, "self", progress=False)
    assert [r["kind"] for r in rows] == ["double", "double", "single", "single"]
    assert all(r["score"] > 0 for r in rows)
    data = elbo_importance(hunyuan, hunyuan_calib, "data", progress=False)
    assert all(math.isfinite(r["score"]) and r["stderr"] > 0 for r in data)


def test_metric_drop_importance_with_any_metric(wan):
    calls = []

    def metric(model, skip):
        calls.append(set(skip))
        return 1.0 - 0.1 * sum(i + 1 for i in skip)

    rows = metric_drop_importance(wan, metric, progress=False)
    assert calls[0] == set() and len(calls) == 5
    assert [round(r["score"], 9) for r in rows] == [0.1, 0.2, 0.3, 0.4]
    assert [r["rank"] for r in rows] == [3, 2, 1, 0]
    assert all(r["metric_full"] == 1.0 for r in rows)


def test_shapes_oracle_metric_is_deterministic(tiny_shapes_model):
    model = load_denoiser(tiny_shapes_model)
    metric = OracleMetric(num_cases=2, num_steps=1, guidance=1.0, seed=5)
    a, b = metric(model, frozenset()), metric(model, frozenset())
    assert a == b and 0.0 <= a <= 1.0
    assert 0.0 <= metric(model, frozenset({0})) <= 1.0


def _rows_of(scores):
    return [{"index": i, "score": float(v)} for i, v in enumerate(scores)]


def test_rows_spearman_known_values():
    assert rows_spearman(_rows_of([1, 2, 3, 4, 5]), _rows_of([5, 6, 7, 8, 7])) == pytest.approx(8 / math.sqrt(95))  # ties
    assert rows_spearman(_rows_of([1, 2, 3]), _rows_of([30, 20, 10])) == pytest.approx(-1.0)
    assert rows_spearman(_rows_of([1, 2, 3, 4]), _rows_of([1, 4, 9, 16])) == pytest.approx(1.0)  # monotone, not linear
    assert rows_spearman(_rows_of([3, 1, 2, 2]), _rows_of([1, 2, 3, 4])) == pytest.approx(-1.5 / math.sqrt(22.5))
    assert math.isnan(rows_spearman(_rows_of([1, 1, 1]), _rows_of([1, 2, 3])))
    # only the blocks both lists score count
    b = [{"index": i, "score": v} for i, v in ((1, 3.0), (2, 2.0), (3, 1.0))]
    assert rows_spearman(_rows_of([-9, 1, 2, 3]), b) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="at least 2 blocks"):
        rows_spearman(_rows_of([1, 2]), [{"index": 1, "score": 0.0}])


def test_write_read_importance_and_fingerprint(wan, wan_calib, tmp_path):
    rows = elbo_importance(wan, wan_calib, "data", progress=False)
    free = elbo_importance(wan, wan_calib, "self", progress=False)
    path = write_importance(tmp_path / "importance.json", wan, rows,
                            {"calib": wan_calib.info, "data_free": {"reference": "self", "blocks": free},
                             "spearman_data_vs_data_free": rows_spearman(rows, free)})
    doc = read_importance(path, wan)
    assert doc["method"] == "elbo" and doc["reference"] == "data" and doc["family"] == "wan"
    assert [list(r)[:7] for r in doc["blocks"]][0] == ["index", "kind", "kind_index", "params", "score", "stderr", "rank"]
    assert _scores(doc["blocks"]) == pytest.approx(_scores(rows))
    assert _scores(doc["data_free"]["blocks"]) == pytest.approx(_scores(free))
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary file

    other = WanDenoiser.from_config(**tiny_wan_config(num_layers=4)).eval()
    with pytest.raises(ValueError, match="was computed on another model .*re-run fastlight analyze"):
        read_importance(path, other)

    bad = json.loads(path.read_text())
    bad["blocks"][0]["index"] = 40
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="names block 40 but the model has blocks 0..3"):
        read_importance(tmp_path / "bad.json", wan)


def test_plot_is_png(hunyuan, hunyuan_calib, tmp_path):
    rows = elbo_importance(hunyuan, hunyuan_calib, "data", progress=False)
    p = plot_importance(rows, tmp_path / "imp.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [f.name for f in tmp_path.iterdir()] == ["imp.png"]


def test_compute_importance_shapes(tiny_shapes_model, tmp_path, capsys):
    res = compute_importance(str(tiny_shapes_model), calib=3, out_dir=str(tmp_path / "a"), methods="elbo,taylor,metric",
                             iterative=True, seed=0, progress=False, metric_cases=2, metric_steps=1)
    out = tmp_path / "a"
    names = {f.name for f in out.iterdir()}
    assert {"importance.json", "importance.png", "importance_data_free.png", "taylor.json", "importance_metric.json",
            "importance_metric.png"} <= names
    model = load_denoiser(tiny_shapes_model)
    doc = read_importance(out / "importance.json", model)
    assert doc["calib"]["num_samples"] == 3 and doc["calib"]["source"] == "shapes"
    assert len(doc["data_free"]["blocks"]) == 2 and "spearman_data_vs_data_free" in doc
    assert sorted(doc["iterative"]["order"]) == [0, 1] and res["iterative_order"] == doc["iterative"]["order"]
    assert read_importance(out / "importance_metric.json", model)["method"] == "metric_drop"
    # every method's rows come back (the command prints them): nothing is printed here
    assert res["rows"] == doc["blocks"] and res["rows_data_free"] == doc["data_free"]["blocks"]
    assert sorted(res["taylor"]) == [0, 1] and res["rows_metric"][0]["index"] == 0 and res["metric"]
    assert res["num_blocks"] == 2 and res["calib"]["num_samples"] == 3
    assert capsys.readouterr().out == ""


def test_compute_importance_needs_latents_for_other_models(tmp_path):
    torch.manual_seed(0)
    model = WanDenoiser.from_config(**tiny_wan_config(num_layers=3))
    model.save(tmp_path / "wan")
    with pytest.raises(ValueError, match="--latents"):
        compute_importance(str(tmp_path / "wan"), calib=2, out_dir=str(tmp_path / "a"), progress=False)
    x0, cond = wan_cond(2, ti2v=False)
    save_file({"x0": x0, "text": cond.text}, str(tmp_path / "lat.safetensors"))
    res = compute_importance(str(tmp_path / "wan"), calib=3, out_dir=str(tmp_path / "a"), progress=False,
                             latents=str(tmp_path / "lat.safetensors"), methods=("elbo", "taylor"))
    doc = read_importance(res["files"]["importance"], load_denoiser(tmp_path / "wan"))
    assert doc["calib"]["source"] == "latents" and len(doc["blocks"]) == 3
    with pytest.raises(ValueError, match="--metric NAME .*shapes-oracle"):
        compute_importance(str(tmp_path / "wan"), calib=2, out_dir=str(tmp_path / "b"), progress=False,
                           latents=str(tmp_path / "lat.safetensors"), methods="metric")
    with pytest.raises(ValueError, match="--methods"):
        compute_importance(str(tmp_path / "wan"), calib=2, out_dir=str(tmp_path / "b"), methods="magic")
