import json
from pathlib import Path

import pytest
import torch

from fastlight.analyze.importance import assign_ranks, elbo_importance, write_importance
from fastlight.analyze.plans import (PLAN_FORMAT, Plan, WidthKeep, depth_plan, make_plan, model_plan, plan_file,
                                     read_plan, width_plan, write_plan)
from fastlight.analyze.taylor import taylor_saliency, width_layout, write_taylor
from fastlight.models.load import architecture_fingerprint, load_denoiser, model_fingerprint
from fastlight.models.wan import WanDenoiser, tiny_wan_config


def _rows(model, scores):
    rows = [{"index": b.index, "kind": b.kind, "kind_index": b.kind_index, "params": b.num_params, "score": s,
             "stderr": 0.0, "rank": -1} for b, s in zip(model.blocks, scores)]
    return assign_ranks(rows)


@pytest.fixture
def wan8():
    torch.manual_seed(0)
    return WanDenoiser.from_config(**tiny_wan_config(num_layers=8)).eval()


def test_depth_plan_respects_ratio_and_keeps_ends(wan8):
    # the ends are the LEAST important here: they must still be kept
    rows = _rows(wan8, [0.0, 5, 1, 4, 2, 6, 3, 0.1])
    plan = depth_plan(rows, wan8, 0.3, verbose=False)
    total = wan8.num_params()
    assert 0 not in plan["drop_blocks"] and 7 not in plan["drop_blocks"]
    assert plan["achieved_ratio"] >= 0.3
    assert plan["num_params_before"] == total and plan["num_params_after"] == wan8.num_params(plan["drop_blocks"])
    assert plan["achieved_ratio"] == pytest.approx(1 - plan["num_params_after"] / total)
    # greedy by ascending score among the middle blocks: 2 (1), 4 (2), 6 (3), ...
    k = len(plan["drop_blocks"])
    assert plan["drop_blocks"] == sorted([2, 4, 6, 3, 1, 5][:k])
    # minimal: one block fewer would not reach the ratio
    per_block = wan8.blocks[1].num_params
    assert (k - 1) * per_block < 0.3 * total <= k * per_block
    assert sorted(plan["drop_blocks"] + plan["keep_blocks"]) == list(range(8))
    free = depth_plan(rows, wan8, 0.3, keep_ends=False, verbose=False)
    assert 0 in free["drop_blocks"] and 7 in free["drop_blocks"]


@pytest.mark.parametrize("ratio", [0, 1, -0.1, 1.5, True, "0.3"])
def test_depth_plan_refuses_bad_ratios(wan8, ratio):
    with pytest.raises(ValueError, match="prune ratio"):
        depth_plan(_rows(wan8, range(8)), wan8, ratio)


def test_depth_plan_refuses_unreachable_ratio(wan8):
    with pytest.raises(ValueError, match="unreachable"):
        depth_plan(_rows(wan8, range(8)), wan8, 0.95)


def test_width_plan_uniform_and_keeps_a_head(wan, wan_calib):
    scores = taylor_saliency(wan, wan_calib, progress=False)
    for ratio in (0.1, 0.3, 0.45):
        plan = width_plan(scores, wan, ratio, verbose=False)
        assert plan["achieved_ratio"] >= ratio
        assert plan["num_params_after"] == plan["num_params_before"] - round(plan["achieved_ratio"] * plan["num_params_before"])
        kept = {(len(v["keep_heads"]), len(v["keep_ffn"])) for v in plan["layers"].values()}
        assert len(kept) == 1  # the same count in every layer
        nh, nf = kept.pop()
        assert nh >= 1 and nf >= 1
        if ratio == 0.45:
            assert nh == 1  # 1 of 2 heads pruned, never the last one
        for i, spec in plan["layers"].items():
            assert spec["keep_heads"] == sorted(spec["keep_heads"]) and spec["keep_ffn"] == sorted(spec["keep_ffn"])
            ffn = scores[int(i)]["ffn"]
            dropped = [u for u in range(len(ffn)) if u not in spec["keep_ffn"]]
            if dropped:  # the kept units are the most salient ones
                assert ffn[spec["keep_ffn"]].min() >= ffn[dropped].max()
    # parameters removed are counted exactly
    L = width_layout(wan, 0)
    plan = width_plan(scores, wan, 0.3, verbose=False)
    nh, nf = len(plan["layers"]["0"]["keep_heads"]), len(plan["layers"]["0"]["keep_ffn"])
    removed = 4 * ((L.num_heads - nh) * L.params_per_head + (L.ffn_dim - nf) * L.params_per_ffn_unit)
    assert plan["num_params_before"] - plan["num_params_after"] == removed
    with pytest.raises(ValueError, match="unreachable"):
        width_plan(scores, wan, 0.9, verbose=False)
    no_heads = width_plan(scores, wan, 0.2, prune_heads=False, verbose=False)
    assert all(len(v["keep_heads"]) == L.num_heads for v in no_heads["layers"].values())


def test_plan_files_roundtrip_and_validation(wan, tmp_path):
    rows = _rows(wan, [3.0, 1.0, 2.0, 4.0])
    plan = depth_plan(rows, wan, 0.2, verbose=False)
    p = write_plan(tmp_path / "plan.json", plan)
    assert read_plan(p, wan) == plan
    other = WanDenoiser.from_config(**tiny_wan_config(num_layers=5))
    with pytest.raises(ValueError, match="was made for a WanTransformer3DModel with num_layers=4 .*but this model is "
                                         "a WanTransformer3DModel with num_layers=5") as e:
        read_plan(p, other)
    assert "\n" not in str(e.value)
    for change, msg in (({"type": "sideways"}, "'type'"), ({"prune_ratio": 1.2}, "prune ratio"),
                        ({"drop_blocks": [40], "keep_blocks": [0, 1, 2, 3]}, "drop_blocks")):
        bad = {**plan, **change}
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=msg):
            read_plan(tmp_path / "bad.json", wan)
    wide = {**plan, "drop_blocks": [1, 40], "keep_blocks": [0, 2, 3]}
    (tmp_path / "wide.json").write_text(json.dumps(wide))
    with pytest.raises(ValueError):
        read_plan(tmp_path / "wide.json")
    # a plan for a bigger model: ids consistent among themselves but out of range for this one
    big = {**plan, "drop_blocks": [1], "keep_blocks": [0] + list(range(2, 41))}
    (tmp_path / "big.json").write_text(json.dumps(big))
    with pytest.raises(ValueError, match="plan .* names block 4 but the model has blocks 0..3"):
        read_plan(tmp_path / "big.json", wan)
    # checks merged in from fastlight/prune's former plan reader: every message one line, naming the field
    small = {**plan, "drop_blocks": [1], "keep_blocks": [0, 2]}  # consistent, but a 3-block model's plan
    (tmp_path / "small.json").write_text(json.dumps(small))
    assert read_plan(tmp_path / "small.json")["keep_blocks"] == [0, 2]
    for change, msg in (
        ({"drop_blocks": [1], "keep_blocks": [0, 2]}, r"'drop_blocks' \+ 'keep_blocks' must be the blocks 0\.\.3 exactly \(unassigned: \[3\]"),
        ({"num_params_before": plan["num_params_before"] + 1}, r"'num_params_before' says the model has \d+ parameters but it has"),
        ({"family": "hunyuan"}, r"'family' is for a hunyuan model but this model is wan"),
        ({"drop_blocks": [1, 1]}, r"'drop_blocks' lists ids \[1\] more than once"),
        ({"keep_blocks": []}, r"'keep_blocks' is empty: the plan drops every block"),
    ):
        (tmp_path / "bad.json").write_text(json.dumps({**plan, **change}))
        with pytest.raises(ValueError, match=msg) as e:
            read_plan(tmp_path / "bad.json", wan)
        assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="make one with fastlight plan"):
        read_plan(tmp_path / "nope.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        read_plan(tmp_path / "empty")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must be a JSON object"):
        read_plan(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text('{"type": "depth",')
    with pytest.raises(ValueError, match="is not valid JSON") as e:
        read_plan(tmp_path / "bad.json")
    assert "\n" not in str(e.value)


def test_width_plan_validation(wan, wan_calib, tmp_path):
    plan = width_plan(taylor_saliency(wan, wan_calib, progress=False), wan, 0.3, verbose=False)
    p = write_plan(tmp_path / "w.json", plan)
    assert read_plan(p, wan)["type"] == "width"
    bad = json.loads(p.read_text())
    bad["layers"]["0"]["keep_heads"] = []
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="at least 1 head"):
        read_plan(tmp_path / "bad.json")
    bad = json.loads(p.read_text())
    bad["layers"]["40"] = bad["layers"]["0"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="names block 40 but the model has blocks 0..3"):
        read_plan(tmp_path / "bad.json", wan)
    bad = json.loads(p.read_text())
    bad["layers"]["1"]["keep_ffn"] = [0, 99]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="FFN unit 99"):
        read_plan(tmp_path / "bad.json", wan)


def test_make_plan(tmp_path, wan_calib, capsys):
    torch.manual_seed(0)
    model = WanDenoiser.from_config(**tiny_wan_config(num_layers=4)).eval()
    model.save(tmp_path / "m")
    model = load_denoiser(tmp_path / "m")
    rows = elbo_importance(model, wan_calib, "data", progress=False)
    free = elbo_importance(model, wan_calib, "self", progress=False)
    imp = write_importance(tmp_path / "importance.json", model, rows, {"data_free": {"reference": "self", "blocks": free}})
    plan = make_plan(str(imp), str(tmp_path / "m"), 0.2, str(tmp_path / "out"))
    assert plan_file(tmp_path / "out") == tmp_path / "out" / "plan.json" and plan_file("p.json") == Path("p.json")
    assert read_plan(tmp_path / "out" / "plan.json", model) == plan and plan["type"] == "depth"
    assert capsys.readouterr().out == ""  # what it wrote is the command's to say
    plan_free = make_plan(str(imp), str(tmp_path / "m"), 0.2, str(tmp_path / "free.json"), reference="self")
    assert plan_free["type"] == "depth"
    with pytest.raises(ValueError, match="iterative"):
        make_plan(str(imp), str(tmp_path / "m"), 0.2, str(tmp_path / "x.json"), reference="iterative")
    tay = write_taylor(tmp_path / "taylor.json", model, taylor_saliency(model, wan_calib, progress=False))
    wplan = make_plan(str(tay), str(tmp_path / "m"), 0.2, str(tmp_path / "w.json"), kind="width")
    assert read_plan(tmp_path / "w.json", model) == wplan
    # by default the CLI keeps every head: the stock classes cannot export head pruning
    assert all(len(v["keep_heads"]) == 2 for v in wplan["layers"].values())


def test_plan_is_typed_and_its_mapping_is_the_file(wan, wan_calib, tmp_path):
    plan = depth_plan(_rows(wan, [3.0, 1.0, 2.0, 4.0]), wan, 0.1, verbose=False)
    assert isinstance(plan, Plan) and plan.type == "depth" and plan.drop_blocks == (1,)
    assert plan.keep_blocks == (0, 2, 3) and plan["keep_blocks"] == [0, 2, 3]
    assert plan.fingerprint == architecture_fingerprint(wan) != model_fingerprint(wan)
    assert plan.architecture["class"] == "WanTransformer3DModel" and plan.architecture["blocks"] == ["wan"] * 4
    p = write_plan(tmp_path, plan)  # a folder gets plan.json
    assert p == tmp_path / "plan.json"
    doc = json.loads(p.read_text())
    assert doc["format"] == PLAN_FORMAT and plan == doc and dict(plan) == doc
    width = width_plan(taylor_saliency(wan, wan_calib, progress=False), wan, 0.3, verbose=False)
    assert isinstance(width.layers[2], WidthKeep) and list(width.layers[2].keep_ffn) == width["layers"]["2"]["keep_ffn"]
    with pytest.raises(AttributeError):
        plan.drop_blocks = (2,)  # read-only


def test_a_teacher_plan_fits_its_stage2_model_and_model_folders_carry_one(wan, tmp_path):
    """Stage II changes the weights, not the layout: the teacher's plan validates against the trained model."""
    plan = depth_plan(_rows(wan, [3.0, 1.0, 2.0, 4.0]), wan, 0.1, verbose=False)
    with torch.no_grad():
        for q in wan.model.parameters():
            q.add_(0.01 * torch.randn_like(q))  # "trained": other weights, same architecture
    wan.save(tmp_path / "stage2")
    stage2 = load_denoiser(tmp_path / "stage2")
    assert model_plan(tmp_path / "stage2") is None
    write_plan(tmp_path / "stage2", plan)
    assert model_plan(tmp_path / "stage2", stage2) == plan
    assert read_plan(tmp_path / "stage2", stage2).drop_blocks == (1,)  # a model folder names its plan.json
    pruned = WanDenoiser.from_config(**tiny_wan_config(num_layers=3))
    with pytest.raises(ValueError, match="num_layers=4 .* num_layers=3"):
        model_plan(tmp_path / "stage2", pruned)


def test_format1_plans_are_read_against_the_weights(wan, tmp_path):
    plan = depth_plan(_rows(wan, [3.0, 1.0, 2.0, 4.0]), wan, 0.1, verbose=False)
    old = {k: v for k, v in plan.to_json().items() if k not in ("format", "architecture")}
    old["fingerprint"] = model_fingerprint(wan)
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert read_plan(tmp_path / "old.json", wan).drop_blocks == (1,)
    other = WanDenoiser.from_config(**tiny_wan_config(num_layers=4))
    with pytest.raises(ValueError, match="format 1, tied to weights"):
        read_plan(tmp_path / "old.json", other)
    (tmp_path / "future.json").write_text(json.dumps({**plan.to_json(), "format": 9}))
    with pytest.raises(ValueError, match="'format' 9"):
        read_plan(tmp_path / "future.json")
