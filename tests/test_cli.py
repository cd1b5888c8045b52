import subprocess
import sys

import numpy as np
import pytest

from fastlight.cli import main
from fastlight.data import video


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_sample_writes_mp4_and_gif(tiny_shapes_model, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    rc, stdout, err = _run(capsys, "sample", "--model", str(tiny_shapes_model), "--prompt", "a red circle moving left quickly",
                           "--steps", "2", "--seed", "1", "--out", str(out))
    assert rc == 0, err
    frames = video.read_video(out)
    assert frames.shape[0] == 8 and frames.shape[1] == 24 * 8
    assert video.read_video(out.with_suffix(".gif")).shape[0] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif", "clip.mp4"]  # no temp files left


def test_sample_video_returns_its_files_and_says_only_the_sampler(tiny_shapes_model, tmp_path, capsys):
    from fastlight.sample import sample_video

    files = sample_video(str(tiny_shapes_model), "a red circle moving left quickly", str(tmp_path / "c.mp4"), None, 0,
                         {"num_steps": 1}, progress=False)
    assert files == [tmp_path / "c.mp4", tmp_path / "c.gif"] and all(f.stat().st_size > 0 for f in files)
    assert capsys.readouterr().out == ""


def test_demo_writes_clips_and_prints_the_oracle_lines(tiny_shapes_model, tmp_path, capsys):
    from fastlight.shapes.generate import DEMO_PROMPTS, write_demo

    rc, out, err = _run(capsys, "demo", "--model", str(tiny_shapes_model), "--steps", "1", "--out", str(tmp_path / "d"))
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("sampler: 1 Euler step") and "explicit override" in lines[0]
    clip_lines = [ln for ln in lines if "-> oracle:" in ln]
    assert len(clip_lines) == len(DEMO_PROMPTS) and lines[-1].startswith(f"demo videos in {tmp_path / 'd'}/")
    readme = (tmp_path / "d" / "README.txt").read_text().splitlines()
    assert readme[1:] == clip_lines  # the printed lines are README.txt's
    demo = write_demo(str(tmp_path / "e"), str(tiny_shapes_model), overrides={"num_steps": 1}, progress=False)
    assert demo.folder == tmp_path / "e" and demo.clips == clip_lines  # same seed, same clips and verdicts
    assert (demo.folder / "grid.gif").stat().st_size > 0 and capsys.readouterr().out == ""


def test_sample_with_first_frame_png(tiny_shapes_model, tmp_path, capsys):
    import torch

    from fastlight.shapes import world as shapes

    clip = shapes.sample_clips(0, 1)[0]
    first = shapes.render(clip)[:, 0]
    video.write_image(tmp_path / "first.png", first)
    rc, _, err = _run(capsys, "sample", "--model", str(tiny_shapes_model), "--prompt", clip.prompt, "--image",
                      str(tmp_path / "first.png"), "--steps", "1", "--out", str(tmp_path / "c.mp4"))
    assert rc == 0, err
    got = video.read_video(tmp_path / "c.gif")[0]  # GIF is lossless enough to check the pinned frame
    want = video.to_uint8_frames(first[:, None], 8)[0]
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 3
    assert torch.is_tensor(first)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--prompt", "a purple circle moving left quickly"], "not in the Shapes vocabulary"),
        (["--prompt", "a red circle moving left quickly", "--steps", "0"], "steps must be >= 1"),
        (["--prompt", "a red circle moving left quickly", "--out", "x.avi"], "must end in .mp4 or .gif"),
    ],
)
def test_sample_bad_input_one_line_exit_2(tiny_shapes_model, tmp_path, capsys, args, needle):
    argv = ["sample", "--model", str(tiny_shapes_model), "--out", str(tmp_path / "c.mp4"), *args]
    rc, _, err = _run(capsys, *argv)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # no partial output


def test_sample_wrong_image_size_and_missing_model(tiny_shapes_model, tmp_path, capsys):
    import torch

    video.write_image(tmp_path / "big.png", torch.zeros(3, 32, 32))
    rc, _, err = _run(capsys, "sample", "--model", str(tiny_shapes_model), "--prompt", "a red circle staying still",
                      "--image", str(tmp_path / "big.png"), "--out", str(tmp_path / "c.mp4"))
    assert rc == 2 and "needs 24x24" in err
    rc, _, err = _run(capsys, "sample", "--model", str(tmp_path / "nope"), "--prompt", "a red circle staying still",
                      "--out", str(tmp_path / "c.mp4"))
    assert rc == 2 and "does not exist" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png"]


def test_info_lists_blocks(tiny_shapes_model, capsys):
    rc, out, _ = _run(capsys, "info", str(tiny_shapes_model))
    assert rc == 0 and "blocks: 2 (2 wan)" in out and "WanTransformer3DModel" in out


def test_pretrain_bad_config_key_exit_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("steps: 2\nbogus: 1\n")
    p = subprocess.run([sys.executable, "-m", "fastlight.cli", "pretrain", str(cfg)], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "unknown key(s) ['bogus']" in p.stderr


def test_analyze_plan_prune_chain(tiny_shapes_model, tmp_path, capsys):
    import json

    import torch
    from diffusers import WanTransformer3DModel

    from fastlight.shapes import text
    from fastlight.models.denoiser import Cond
    from fastlight.models.load import load_denoiser

    an = tmp_path / "an"
    rc, out, err = _run(capsys, "analyze", str(tiny_shapes_model), "--calib", "4", "--out", str(an), "--methods", "elbo,taylor")
    assert rc == 0, err
    assert (an / "importance.json").exists() and (an / "importance.png").read_bytes()[:4] == b"\x89PNG"
    assert "spearman" in out.lower() and "ELBO importance (reference: data)" in out and "Taylor width saliency" in out
    assert "importance: " in out and "importance.json" in out
    rc, out, err = _run(capsys, "plan", str(an / "importance.json"), "--model", str(tiny_shapes_model), "--ratio", "0.2",
                        "--no-keep-ends", "--out", str(tmp_path / "plan.json"))
    assert rc == 0, err
    assert f"plan written to {tmp_path / 'plan.json'}" in out and "depth plan: drop 1 of 2 blocks" in out
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert len(plan["drop_blocks"]) == 1 and plan["achieved_ratio"] >= 0.2
    rc, out, err = _run(capsys, "prune", str(tiny_shapes_model), "--plan", str(tmp_path / "plan.json"), "--out", str(tmp_path / "pruned"))
    assert rc == 0, err
    assert out.strip().endswith(f"-> {tmp_path / 'pruned'}") and "(depth: 2 -> 1 blocks, " in out
    stock = WanTransformer3DModel.from_pretrained(tmp_path / "pruned")
    assert stock.config.num_layers == 1
    full, small = load_denoiser(tiny_shapes_model), load_denoiser(tmp_path / "pruned")
    x = torch.randn(2, 3, 8, 24, 24)
    s = torch.tensor([0.4, 0.8])
    c = Cond(text.encode(["a red circle moving left quickly", "a blue square staying still"]), x[:, :, :1])
    assert torch.allclose(small(x, s, c), full(x, s, c, skip=set(plan["drop_blocks"])), atol=1e-6)
    # bad input: one line, exit 2
    rc, _, err = _run(capsys, "plan", str(an / "importance.json"), "--model", str(tiny_shapes_model), "--ratio", "1.5",
                      "--out", str(tmp_path / "p2.json"))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "p2.json").exists()
    rc, _, err = _run(capsys, "prune", str(tiny_shapes_model), "--plan", str(tmp_path / "plan.json"), "--out", str(tmp_path / "pruned"))
    assert rc == 2 and ("not empty" in err or "exists" in err)
    rc, _, err = _run(capsys, "analyze", str(tiny_shapes_model), "--calib", "0", "--out", str(tmp_path / "an0"))
    assert rc == 2 and "empty" in err


def test_sample_few_step_student_uses_its_sampler_and_refuses_steps(tiny_shapes_model, tmp_path, capsys):
    import json
    import shutil

    student = tmp_path / "student"
    shutil.copytree(tiny_shapes_model, student)
    # the DMD recipe's sampler.json form (fastlight/distill/dmd.py), read by the SamplerSpec
    (student / "sampler.json").write_text(json.dumps({"sampler": "few_step", "timesteps": [1000, 500],
                                                      "s_list": [1.0, 0.5], "cfg_scale": 1.0}))
    base = ["sample", "--model", str(student), "--prompt", "a red circle moving left quickly", "--out", str(tmp_path / "c.mp4")]
    rc, stdout, _ = _run(capsys, *base)
    assert rc == 0 and "2 few-step steps at timesteps 1000/500, no guidance (the model's own" in stdout
    rc, _, err = _run(capsys, *base, "--steps", "8")
    assert rc == 2 and "few-step student" in err and "--sampler" in err and len(err.strip().splitlines()) == 1
    rc, stdout, err = _run(capsys, *base, "--sampler", "euler", "--steps", "2", "--guidance", "3")
    assert rc == 0, err
    assert "sampler: 2 Euler steps (shift 3), guidance 3 (explicit override" in stdout
    rc, stdout, err = _run(capsys, *base, "--sampler", "few_step", "--timesteps", "1000")
    assert rc == 0 and "sampler: 1 few-step step at timesteps 1000, no guidance (explicit override" in stdout, err


def test_evaluate_and_bench_of_a_student_folder_use_its_sampler(shapes_model_factory, tmp_path, capsys):
    """`fastlight evaluate` / `bench` of a few-step student default to its sampler.json and say so."""
    import json

    from fastlight.diffusion.spec import SamplerSpec

    student = shapes_model_factory(tmp_path / "student", sampler=SamplerSpec.few_step((1000, 500)))
    rc, out, err = _run(capsys, "evaluate", str(student), "--out", str(tmp_path / "ev"), "--num-cases", "2",
                        "--no-videos", "--no-vbench")
    assert rc == 0, err
    doc = json.loads((tmp_path / "ev" / "shapesbench.json").read_text())
    assert (doc["sampler"], doc["num_steps"], doc["nfe_per_video"]) == ("few_step", 2, 2)
    assert "the model's own" in out
    summary = out.strip().splitlines()[-1]  # the command's one summary line, after the sampler line
    assert summary.startswith(f"ShapesBench score {doc['score']:.4f} [") and "(95%, 2 test cases)" in summary
    assert summary.endswith(f"-> {tmp_path / 'ev' / 'shapesbench.json'}")
    rc, out, err = _run(capsys, "bench", "--model", str(student), "--model", f"{student}:sampler=euler,steps=2",
                        "--repeats", "1", "--warmup", "0", "--out", str(tmp_path / "b.json"))
    assert rc == 0, err
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [(r["sampler"], r["nfe"]) for r in rows] == [("few_step", 2), ("euler", 4)]
    assert "the model's own" in out and "explicit override" in out
    rc, _, err = _run(capsys, "evaluate", str(student), "--out", str(tmp_path / "ev2"), "--guidance", "4")
    assert rc == 2 and "few-step student" in err and len(err.strip().splitlines()) == 1
