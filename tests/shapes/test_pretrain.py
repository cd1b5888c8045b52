import json

import pytest
import torch
from safetensors.torch import load_file

from fastlight.shapes import pretrain as pt


def _cfg(tmp_path, name, **kw):
    base = dict(out=str(tmp_path / name), steps=4, batch_size=4, num_layers=2, warmup_steps=2, probe_every=2,
                save_every=2, log_every=1, threads=1)
    return pt.PretrainConfig(**{**base, **kw})


def test_pretrain_writes_model_and_manifest(tmp_path):
    out = pt.pretrain(_cfg(tmp_path, "a"), progress=False)
    meta = json.loads((out / "fastlight.json").read_text())
    assert meta["steps"] == 4 and meta["world"] == {"size": 24, "num_frames": 8} and len(meta["loss_curve"]) == 4
    assert (out / "config.json").exists() and (out / "diffusion_pytorch_model.safetensors").exists()
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert "prompt_sensitivity" in rows[1] and 0 <= rows[1]["probe_direction_acc"] <= 1


def test_resume_after_a_crash_gives_the_same_weights(tmp_path, monkeypatch):
    ref = pt.pretrain(_cfg(tmp_path, "ref"), progress=False)
    real = pt.make_batch

    def crash_at_3(cfg, step):
        if step == 3:
            raise KeyboardInterrupt("simulated crash")
        return real(cfg, step)

    monkeypatch.setattr(pt, "make_batch", crash_at_3)
    with pytest.raises(KeyboardInterrupt):
        pt.pretrain(_cfg(tmp_path, "b"), progress=False)
    assert json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())["step"] == 2
    monkeypatch.setattr(pt, "make_batch", real)
    resumed = pt.pretrain(_cfg(tmp_path, "b"), progress=False)
    a = load_file(str(ref / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(resumed / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_batches_are_a_function_of_seed_and_step():
    cfg = pt.PretrainConfig(batch_size=3)
    x1, t1, e1, s1 = pt.make_batch(cfg, 5)
    x2, t2, e2, s2 = pt.make_batch(cfg, 5)
    assert torch.equal(x1, x2) and torch.equal(e1, e2) and torch.equal(s1, s2)
    assert not torch.equal(pt.make_batch(cfg, 6)[0], x1)
