"""`prune_model`: plan checks, manifest, meta carried over, atomic output (tiny, CPU)."""
import json

import pytest
import torch
from diffusers import WanTransformer3DModel

from fastlight.models.denoiser import Cond, Denoiser
from fastlight.models.load import architecture, architecture_fingerprint, load_denoiser, model_fingerprint
from fastlight.models.hunyuan import HunyuanDenoiser, tiny_hunyuan_config
from fastlight.analyze.plans import model_plan, read_plan, validate_plan
from fastlight.commands.prune import summary_line
from fastlight.prune import prune_model

DELETE = object()  # a plan field to leave out


def depth_plan(den, drop, **over):
    before = den.num_params()
    after = den.num_params(drop)
    plan = {
        "format": 2, "type": "depth", "fingerprint": architecture_fingerprint(den), "architecture": architecture(den),
        "family": den.family, "prune_ratio": 0.3,
        "achieved_ratio": 1 - after / before, "drop_blocks": drop,
        "keep_blocks": [i for i in range(den.num_blocks) if i not in drop],
        "num_params_before": before, "num_params_after": after,
    }
    plan.update(over)
    return {k: v for k, v in plan.items() if v is not DELETE}


def width_plan(den, keep_ffn, heads=None, **over):
    cfg = den.model.config
    dim = cfg.num_attention_heads * cfg.attention_head_dim
    after = den.num_params() - den.num_blocks * (cfg.ffn_dim - len(keep_ffn)) * (2 * dim + 1)
    layers = {str(b): {"keep_heads": heads or list(range(cfg.num_attention_heads)), "keep_ffn": keep_ffn}
              for b in range(den.num_blocks)}
    plan = {"format": 2, "type": "width", "fingerprint": architecture_fingerprint(den), "architecture": architecture(den),
            "family": den.family, "prune_ratio": 0.1,
            "achieved_ratio": 1 - after / den.num_params(), "layers": layers,
            "num_params_before": den.num_params(), "num_params_after": after}
    plan.update(over)
    return plan


def write(path, plan):
    path.write_text(json.dumps(plan))
    return path


@pytest.fixture(scope="module")
def src(tiny_shapes_model):
    return tiny_shapes_model, load_denoiser(tiny_shapes_model)


def test_depth_manifest_meta_and_stock_load(src, tmp_path, capsys):
    path, den = src
    plan = write(tmp_path / "plan.json", depth_plan(den, [1]))
    out = prune_model(str(path), plan, tmp_path / "out")
    assert out == tmp_path / "out"
    assert capsys.readouterr().out == ""  # the summary line is the command's
    assert {p.name for p in out.iterdir()} >= {"config.json", "manifest.json", "fastlight.json", "null_text.safetensors"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left
    m = json.loads((out / "manifest.json").read_text())
    assert m["source"] == str(path) and m["source_fingerprint"] == model_fingerprint(den)
    assert m["plan_type"] == "depth" and m["kept_blocks"] == [0] and m["dropped_blocks"] == [1]
    assert m["prune_ratio"] == 0.3
    assert m["num_params_before"] == den.num_params() and m["num_params_after"] == den.num_params([1])
    assert m["achieved_ratio"] == pytest.approx(1 - den.num_params([1]) / den.num_params())
    assert m["config_changes"] == {"num_layers": {"from": 2, "to": 1}}
    line = summary_line(m, out)
    assert "\n" not in line and "(depth: 2 -> 1 blocks, " in line and line.endswith(f"-> {out}")
    # the folder carries the plan it was made with, in the source's numbering: it fits the source, not itself
    assert model_plan(out, den).drop_blocks == (1,)
    with pytest.raises(ValueError, match="num_layers=2 .* num_layers=1"):
        model_plan(out, load_denoiser(out))
    meta = json.loads((out / "fastlight.json").read_text())
    assert meta["world"] == {"size": 24, "num_frames": 8} and meta["shift"] == 3.0
    assert meta["pruned_from"] == str(path) and meta["family"] == "wan"
    stock = WanTransformer3DModel.from_pretrained(out)
    assert stock.config.num_layers == 1
    pruned = load_denoiser(out)
    x, s, txt = torch.randn(1, 3, 8, 24, 24), torch.tensor([0.5]), torch.randn(1, 4, den.model.config.text_dim)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x, s, Cond(txt)), den(x, s, Cond(txt), skip={1}), atol=1e-6, rtol=0)
    assert torch.equal(pruned.null_text, den.null_text)


def test_width_plan_applied(src, tmp_path):
    path, den = src
    keep = list(range(0, 32, 2))
    out = prune_model(path, write(tmp_path / "w.json", width_plan(den, keep)), tmp_path / "w")
    m = json.loads((out / "manifest.json").read_text())
    assert m["plan_type"] == "width" and m["kept_blocks"] == [0, 1] and m["dropped_blocks"] == []
    assert m["config_changes"] == {"ffn_dim": {"from": 32, "to": 16}}
    assert "(width: ffn_dim 32 -> 16, " in summary_line(m, out)
    assert m["width"]["keep_ffn"]["1"] == keep and m["width"]["heads_kept_per_block"] == 2
    stock = WanTransformer3DModel.from_pretrained(out)
    assert stock.config.ffn_dim == 16 and sum(p.numel() for p in stock.parameters()) == m["num_params_after"]
    with pytest.raises(ValueError, match="head pruning"):
        prune_model(path, write(tmp_path / "h.json", width_plan(den, keep, heads=[0])), tmp_path / "h")


def test_hunyuan_depth_plan_applied(tmp_path):
    torch.manual_seed(0)
    den = HunyuanDenoiser.from_config(meta={"shift": 7.0}, **tiny_hunyuan_config(num_layers=2, num_single_layers=3))
    den.save(tmp_path / "hy")
    den = load_denoiser(tmp_path / "hy")
    out = prune_model(tmp_path / "hy", write(tmp_path / "p.json", depth_plan(den, [0, 3])), tmp_path / "out")
    m = json.loads((out / "manifest.json").read_text())
    assert m["config_changes"] == {"num_layers": {"from": 2, "to": 1}, "num_single_layers": {"from": 3, "to": 2}}
    assert m["kept_blocks"] == [1, 2, 4]
    pruned = load_denoiser(out)
    assert pruned.meta["shift"] == 7.0 and pruned.num_params() == den.num_params([0, 3])
    with pytest.raises(ValueError, match="width pruning supports Wan only"):
        plan = {**depth_plan(den, []), "type": "width", "layers": {"0": {"keep_heads": [0, 1], "keep_ffn": [0, 1]}}}
        prune_model(tmp_path / "hy", write(tmp_path / "w.json", plan), tmp_path / "w")


def _err(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(
    "change, match",
    [
        ({"prune_ratio": 1.5}, r"'prune_ratio' = 1.5 is not a prune ratio in \(0, 1\)"),
        ({"prune_ratio": 0}, r"'prune_ratio' = 0 is not a prune ratio in \(0, 1\)"),
        ({"prune_ratio": "x"}, r"'prune_ratio' must be a number"),
        ({"prune_ratio": None}, r"'prune_ratio' must be a number"),
        ({"prune_ratio": True}, r"'prune_ratio' must be a number"),
        ({"prune_ratio": DELETE}, r"lacks \['prune_ratio'\]; re-run fastlight plan"),
        ({"achieved_ratio": -0.1}, r"'achieved_ratio' = -0.1"),
        ({"achieved_ratio": float("nan")}, r"'achieved_ratio' must be a number"),
        ({"drop_blocks": [40], "keep_blocks": list(range(40)) + [41]}, r"'drop_blocks' names block 40 but the model has blocks 0\.\.1"),
        ({"drop_blocks": [], "keep_blocks": [0]}, r"'drop_blocks' \+ 'keep_blocks' must be the blocks 0\.\.1 exactly \(unassigned: \[1\]"),
        ({"keep_blocks": None}, r"'keep_blocks' must be a list of integer ids"),
        ({"keep_blocks": DELETE}, r"lacks \['keep_blocks'\]"),
        ({"fingerprint": "0123456789abcdef"}, r"was made for a WanTransformer3DModel of this config but another fingerprint \(architecture 0123456789abcdef"),
        ({"fingerprint": ""}, r"'fingerprint' must be a non-empty string"),
        ({"family": "hunyuan"}, r"is for a hunyuan model but this model is wan"),
        ({"family": "sd"}, r"'family' must be one of"),
        ({"type": "heads"}, r"'type' must be one of \('depth', 'width'\)"),
        ({"drop_blocks": [1, 1]}, r"lists ids \[1\] more than once"),
        ({"drop_blocks": ["1"]}, r"list of integer ids"),
        ({"drop_blocks": [-1]}, r"'drop_blocks' has a negative id -1"),
        ({"keep_blocks": [0, 1]}, r"blocks \[1\] are in both"),
        ({"keep_blocks": []}, r"'keep_blocks' is empty: the plan drops every block"),
        ({"num_params_after": 5}, r"says 5 parameters remain"),
        ({"num_params_after": None}, r"'num_params_after' must be a positive integer"),
        ({"num_params_after": 10**12}, r"'num_params_after' 1000000000000 exceeds 'num_params_before'"),
        ({"num_params_before": 10**9}, r"says the model has 1000000000 parameters but it has"),
        ({"drop_blocks": [0, 1], "keep_blocks": []}, r"drops every block"),
    ],
)
def test_bad_plans(src, tmp_path, change, match):
    path, den = src
    plan = write(tmp_path / "plan.json", depth_plan(den, [1], **change))
    with pytest.raises(ValueError, match=match) as e:
        prune_model(path, plan, tmp_path / "out")
    _err(e)
    assert not (tmp_path / "out").exists()


def test_bad_plan_files(src, tmp_path):
    """File-level and width-plan checks, now done by the plan format's owner, fastlight.analyze.plans.read_plan."""
    path, den = src
    with pytest.raises(FileNotFoundError, match="does not exist; make one with fastlight plan"):
        read_plan(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prune_model(path, tmp_path / "nope.json", tmp_path / "out")
    with pytest.raises(ValueError, match="is a folder; pass the plan JSON file") as e:
        read_plan(tmp_path)
    _err(e)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON") as e:
        read_plan(tmp_path / "bad.json")
    _err(e)
    with pytest.raises(ValueError, match="must be a JSON object") as e:
        read_plan(write(tmp_path / "list.json", [1, 2]))
    _err(e)
    plan = width_plan(den, [0, 1])
    plan["layers"]["x"] = {"keep_ffn": [0]}
    with pytest.raises(ValueError, match="'layers' key 'x' is not a block id"):
        read_plan(write(tmp_path / "w.json", plan))
    plan = width_plan(den, [0, 1])
    plan["layers"]["01"] = plan["layers"].pop("1")
    with pytest.raises(ValueError, match="'layers' key '01' is not a block id"):
        read_plan(write(tmp_path / "w.json", plan))
    plan = width_plan(den, [0, 1])
    plan["layers"][1] = plan["layers"]["1"]  # an in-memory plan naming block 1 twice
    with pytest.raises(ValueError, match="'layers' names block 1 twice"):
        validate_plan(plan)
    plan = width_plan(den, [1, 0])
    with pytest.raises(ValueError, match="'keep_ffn' must be sorted"):
        read_plan(write(tmp_path / "w.json", plan))
    plan = width_plan(den, [0, 1, 1])
    with pytest.raises(ValueError, match=r"'keep_ffn' lists ids \[1\] more than once"):
        read_plan(write(tmp_path / "w.json", plan))
    plan = width_plan(den, [0, 1])
    plan["layers"]["0"]["keep_ffn"] = []
    with pytest.raises(ValueError, match="layer 0 must keep at least 1 head and 1 FFN unit"):
        read_plan(write(tmp_path / "w.json", plan))
    plan = width_plan(den, [0, 1])
    plan["layers"]["0"]["keep_attn"] = [0]
    with pytest.raises(ValueError, match=r"layer 0 has unknown keys \['keep_attn'\]"):
        read_plan(write(tmp_path / "w.json", plan))
    plan = width_plan(den, [0, 1])
    plan["layers"]["9"] = plan["layers"]["0"]
    with pytest.raises(ValueError, match=r"names block 9 but the model has blocks 0\.\.1"):
        prune_model(path, write(tmp_path / "w.json", plan), tmp_path / "out")
    with pytest.raises(ValueError, match=r"names block 9 but the model has blocks 0\.\.1"):
        read_plan(tmp_path / "w.json", den)
    assert read_plan(write(tmp_path / "ok.json", width_plan(den, [0, 1])), den)["type"] == "width"
    assert not (tmp_path / "out").exists()


def test_out_dir_rules(src, tmp_path):
    path, den = src
    plan = write(tmp_path / "plan.json", depth_plan(den, [0]))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="is not empty") as e:
        prune_model(path, plan, out)
    _err(e)
    assert (out / "keep.txt").exists()
    prune_model(path, plan, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "manifest.json").exists()
    (tmp_path / "empty").mkdir()
    prune_model(path, plan, tmp_path / "empty")  # an existing empty folder is fine
    with pytest.raises(ValueError, match="is a file"):
        prune_model(path, plan, plan)
    with pytest.raises(ValueError, match="is \\(or contains\\) the source model"):
        prune_model(path, plan, path, overwrite=True)
    assert (path / "config.json").exists()


def test_failed_write_leaves_nothing(src, tmp_path, monkeypatch):
    path, den = src
    plan = write(tmp_path / "plan.json", depth_plan(den, [0]))

    def boom(self, folder, meta=None):
        (folder / "partial.bin").write_text("x")
        raise OSError("disk full")

    monkeypatch.setattr(Denoiser, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        prune_model(path, plan, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]
