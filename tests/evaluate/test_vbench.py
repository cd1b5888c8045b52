"""VBench-style dimensions: VBench's formulas and protocols, score_videos, folder I/O, the verb, errors (the
known-answer table is test_vbench_known_answers.py)."""
from __future__ import annotations

import json
import re
import sys
import types

import numpy as np
import pytest
from synthetic_videos import disk_clip, shifted_texture, texture, upscale_video

from fastlight.commands import vbench as vbench_command
from fastlight.cli import main
from fastlight.data.video import write_video
from fastlight.evaluate import vbench as vb
from fastlight.evaluate.vbench.flow import block_factor


def _moving(k=1.0, size=24, n=8):
    return disk_clip(size, [6 + k * t for t in range(n)])


def _still_for_gif(n=8):
    """A still clip whose frames differ in one corner pixel: Pillow merges identical GIF frames."""
    v = _moving(0.0, n=n).copy()
    v[:, 0, 0, 0] += np.arange(n, dtype=np.uint8) % 2
    return v


# --------------------------------------------------------------------------- registry

def test_dimensions_registry():
    assert set(vb.DIMENSIONS) == {
        "subject_consistency", "background_consistency", "temporal_flickering", "motion_smoothness",
        "dynamic_degree", "aesthetic_quality", "imaging_quality", "i2v_subject", "i2v_background"}
    for name, meta in vb.DIMENSIONS.items():
        assert set(meta) >= {"kind", "needs_image", "min_frames", "doc"}, name
        assert meta["kind"] in ("exact", "proxy", "n/a")
        assert isinstance(meta["min_frames"], int) and meta["min_frames"] >= 1
        assert meta["doc"]
    # the static filter's flow is OpenCV's, not RAFT: exact only with the filter off
    assert vb.DIMENSIONS["temporal_flickering"]["kind"] == "proxy"
    assert vb.dimension_kind("temporal_flickering", static_filter=False) == "exact"
    assert {d: vb.dimension_kind(d) for d in vb.DIMENSIONS} == {d: m["kind"] for d, m in vb.DIMENSIONS.items()}
    assert vb.DIMENSIONS["aesthetic_quality"]["kind"] == "n/a"
    assert vb.DIMENSIONS["motion_smoothness"]["min_frames"] == 3
    assert {d for d, m in vb.DIMENSIONS.items() if m["needs_image"]} == {"i2v_subject", "i2v_background"}


# --------------------------------------------------------------------------- per-video functions

def test_temporal_flickering_is_vbench_formula_and_static_only():
    rng = np.random.default_rng(0)
    base = texture(20, 28, 1)
    v = np.clip(base[None].astype(int) + rng.integers(-9, 10, (5, 20, 28, 3)), 0, 255).astype(np.uint8)
    f = v.astype(np.float64)
    expect = (255 - np.mean([np.abs(f[i + 1] - f[i]).mean() for i in range(4)])) / 255
    assert vb.temporal_flickering(v, static_filter=False) == pytest.approx(expect, abs=1e-6)  # float32 as VBench
    moving = shifted_texture(32, 3.0)
    assert not vb.is_static(moving)
    assert vb.temporal_flickering(moving) is None
    assert vb.temporal_flickering(moving, static_filter=False) < 1.0


def test_dynamic_degree_protocol():
    v = shifted_texture(64, 1.0, n=16)
    d = vb.dynamic_degree_details(v, fps=16)
    assert d["interval"] == 2 and d["num_sampled"] == 8
    assert d["thres"] == pytest.approx(6.0 * 64 / 256)
    assert d["count_num"] == round(4 * 8 / 16)
    assert d["dynamic"] and all(s == pytest.approx(2.0, abs=0.6) for s in d["scores"])
    d4 = vb.dynamic_degree_details(v[:8], fps=4)
    assert d4["thres"] == pytest.approx(2 * 6.0 * 64 / 256) and d4["interval"] == 1
    wide = np.zeros((4, 40, 96, 3), np.uint8)  # thresholds follow min(H, W)
    assert vb.dynamic_degree_details(wide, 8)["thres"] == pytest.approx(6.0 * 40 / 256)
    assert vb.dynamic_degree(wide, 8) is False
    assert vb.dynamic_degree(_moving(1.0), 8.0) is True


def test_flow_scale_free_and_blocky_upscale():
    v = shifted_texture(64, 2.0, n=2)
    flow = vb.optical_flow(v[0], v[1])
    assert flow.shape == (64, 64, 2)
    assert np.median(flow[8:-8, 8:-8, 0]) == pytest.approx(-2.0, abs=0.2)  # content moves left
    small = _moving(1.0)
    assert block_factor(small) == 1
    assert block_factor(upscale_video(small, 8)) == 8
    assert block_factor(upscale_video(small, 4)) == 4
    far = vb.optical_flow(small[0], small[1], method="farneback")
    assert far.shape == (24, 24, 2) and np.isfinite(far).all()


def test_motion_smoothness_and_interpolation():
    still = np.stack([texture(16, 16, 2)] * 5)
    assert vb.motion_smoothness(still) == pytest.approx(1.0)
    mid = vb.interpolate_midpoint(still[0], still[0])
    assert np.array_equal(mid, still[0])
    assert 0.0 <= vb.motion_smoothness(_moving(1.5, 32)) <= 1.0


def test_consistency_and_i2v_ranges():
    v = _moving(1.0, 32)
    for fn in (vb.subject_consistency, vb.background_consistency):
        assert 0.0 <= fn(v) <= 1.0
    img = v[0]
    small_img = img[::2, ::2]  # a differently sized image is resized to the video
    for fn in (vb.i2v_subject, vb.i2v_background):
        assert fn(v, img) == pytest.approx(fn(v, img))
        assert 0.0 <= fn(v, small_img) <= 1.0
    feats = vb.subject_features(img), vb.background_features(img)
    for f in feats:
        assert np.linalg.norm(f) == pytest.approx(1.0)


def test_imaging_quality_components():
    c = vb.imaging_quality_components(_moving()[0])
    for k in ("sharpness", "noise", "exposure", "contrast", "quality"):
        assert 0.0 <= c[k] <= 1.0
    assert vb.imaging_quality(np.zeros((2, 8, 8, 3), np.uint8)) == 0.0  # flat grey: no content
    assert vb.aesthetic_quality(_moving()) is None


def test_float_input_accepted():
    v = _moving().astype(np.float32) / 255.0
    assert vb.motion_smoothness(v) == pytest.approx(vb.motion_smoothness(_moving()), abs=1e-3)


# --------------------------------------------------------------------------- score_videos

def test_score_videos_structure_and_means():
    vids = [_moving(0.0), _moving(1.0), _moving(1.0)]
    res = vb.score_videos(vids, images=[v[0] for v in vids], fps=8.0)
    assert set(res) == set(vb.DIMENSIONS)
    for d, r in res.items():
        assert r["kind"] == vb.DIMENSIONS[d]["kind"]
        assert r["num_videos"] == 3 and len(r["per_video"]) == 3
        assert r["score"] is None or 0.0 <= r["score"] <= 1.0
    assert res["dynamic_degree"]["per_video"] == [False, True, True]
    assert res["dynamic_degree"]["score"] == pytest.approx(2 / 3)
    tf = res["temporal_flickering"]
    assert tf["per_video"][0] == 1.0 and tf["per_video"][1:] == [None, None] and tf["num_scored"] == 1
    assert tf["score"] == 1.0
    assert res["aesthetic_quality"]["score"] is None
    ms = res["motion_smoothness"]
    assert ms["score"] == pytest.approx(np.mean(ms["per_video"]))
    no_img = vb.score_videos(vids[:1], dims=None)
    assert "i2v_subject" not in no_img and "subject_consistency" in no_img
    assert vb.score_videos([], dims=["imaging_quality"])["imaging_quality"]["score"] is None


def test_score_videos_errors_are_one_line_valueerrors():
    v = _moving()
    cases = [
        lambda: vb.score_videos([v, v], images=[v[0]]),
        lambda: vb.score_videos([v[:2]], dims=["motion_smoothness"]),
        lambda: vb.score_videos([v[:1]], dims=["subject_consistency"]),
        lambda: vb.score_videos([v[:3]], fps=24.0, dims=["dynamic_degree"]),  # 1 frame after 8 fps sampling
        lambda: vb.score_videos([v], dims=["i2v_subject"]),
        lambda: vb.score_videos([v], dims=["not_a_dim"]),
        lambda: vb.motion_smoothness(v[:2]),
        lambda: vb.score_videos([np.zeros((4, 8, 8), np.uint8)[..., None, None]]),
    ]
    for make in cases:
        with pytest.raises(ValueError) as e:
            make()
        assert "\n" not in str(e.value) and str(e.value)
    with pytest.raises(ValueError, match="motion_smoothness needs >= 3"):
        vb.score_videos([v[:2]], dims=["motion_smoothness"])


# --------------------------------------------------------------------------- folders

@pytest.fixture()
def video_folder(tmp_path):
    d = tmp_path / "videos"
    d.mkdir()
    write_video(d / "a_moving.mp4", upscale_video(_moving(1.0), 8), fps=8)
    write_video(d / "b_still.gif", _still_for_gif(), fps=8)
    (d / "c_empty.mp4").write_bytes(b"")
    (d / "d_garbage.gif").write_bytes(b"GIF89a not really")
    (d / "notes.txt").write_text("ignored")
    return d


def test_evaluate_folder_skips_bad_files_and_writes_json(video_folder, tmp_path):
    out = tmp_path / "res" / "vbench.json"
    res = vb.evaluate_folder(video_folder, dims=["dynamic_degree", "temporal_flickering", "imaging_quality"],
                             out_json=out, progress=False)
    assert res["videos"] == ["a_moving.mp4", "b_still.gif"]
    assert res["skipped"] == ["c_empty.mp4", "d_garbage.gif"] and res["num_skipped"] == 2
    assert res["dynamic_degree"]["per_video"] == [True, False]
    assert res["temporal_flickering"]["per_video"][0] is None
    assert res["temporal_flickering"]["per_video"][1] == pytest.approx(1.0, abs=1e-4)
    saved = json.loads(out.read_text())
    assert saved["num_skipped"] == 2 and saved["dynamic_degree"]["score"] == 0.5
    assert [p.name for p in out.parent.iterdir()] == ["vbench.json"]  # no temp file left behind


def test_evaluate_folder_images(video_folder, tmp_path):
    import cv2

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    a, b = upscale_video(_moving(1.0), 8)[0], _moving(0.0)[0]
    # same stems -> matched by stem, whatever the sorted order of names
    for name, img in (("a_moving", a), ("b_still", b), ("c_empty", b), ("d_garbage", b)):
        cv2.imwrite(str(imgs / f"{name}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    res = vb.evaluate_folder(video_folder, images=imgs, dims=["i2v_subject", "i2v_background"], progress=False)
    assert res["i2v_subject"]["num_videos"] == 2 and res["i2v_subject"]["score"] > 0.9
    (imgs / "extra.png").write_bytes((imgs / "b_still.png").read_bytes())
    with pytest.raises(ValueError, match=r"do not match the videos by name \(no video for extra.png\)"):
        vb.evaluate_folder(video_folder, images=imgs, dims=["i2v_subject"], progress=False)
    with pytest.raises(ValueError, match="need the conditioning images"):
        vb.evaluate_folder(video_folder, dims=["i2v_subject"], progress=False)


def test_evaluate_folder_bad_folder(tmp_path):
    with pytest.raises(ValueError, match="no .mp4/.gif"):
        vb.evaluate_folder(tmp_path, progress=False)
    with pytest.raises(ValueError):
        vb.evaluate_folder(tmp_path / "missing", progress=False)


def test_cli_verb(video_folder, tmp_path, capsys):
    out = tmp_path / "cli.json"
    assert main(["vbench", str(video_folder), "--dims", "dynamic_degree,imaging_quality", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["dynamic_degree"]["score"] == 0.5
    printed = capsys.readouterr().out
    assert "dynamic_degree" in printed and "skipped 2: c_empty.mp4, d_garbage.gif" in printed
    assert main(["vbench", str(tmp_path / "missing")]) == 2
    assert "not a folder of videos" in capsys.readouterr().err
    assert main(["vbench"]) == 2  # no folder and no --validate
    assert "give a folder of videos" in capsys.readouterr().err


def test_cli_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["vbench", "--help"])
    text = capsys.readouterr().out
    for opt in ("--images", "--fps", "--dims", "--backend", "--out", "--validate"):
        assert opt in text


def test_cli_validate_runs_the_known_answer_checks(capfd, monkeypatch, tmp_path):
    assert main(["vbench", "--validate"]) == 0
    out = capfd.readouterr().out
    assert "| dimension | kind | case |" in out and re.search(r"\n(\d+)/\1 passed in", out)  # all of them
    monkeypatch.setattr(vbench_command, "VBENCH_CHECKS", tmp_path / "missing.py")  # an installed package: no tests folder
    assert main(["vbench", "--validate"]) == 2
    assert "known-answer checks of a source checkout" in capfd.readouterr().err


# --------------------------------------------------------------------------- official backend

def test_vbench_backend_missing_says_how_to_install(video_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "vbench", None)  # import vbench -> ImportError
    with pytest.raises(vb.VBenchUnavailable) as e:
        vb.evaluate_folder(video_folder, dims=["dynamic_degree"], backend="vbench", progress=False)
    msg = str(e.value)
    assert "pip install vbench" in msg and "\n" not in msg
    assert main(["vbench", str(video_folder), "--backend", "vbench", "--dims", "dynamic_degree"]) == 2


def test_vbench_backend_lays_out_custom_input_and_maps_results(video_folder, monkeypatch, tmp_path):
    calls = []

    class FakeVBench:
        def __init__(self, device, full_info_dir, output_path):
            self.out = output_path

        def evaluate(self, videos_path, name, dimension_list=None, local=False, mode="vbench_standard", **kw):
            import os

            names = sorted(os.listdir(videos_path))
            calls.append((names, dimension_list, mode))
            os.makedirs(self.out, exist_ok=True)
            res = {d: [0.75, [{"video_path": os.path.join(videos_path, n), "video_results": 0.5 + i * 0.5}
                              for i, n in enumerate(names)]] for d in dimension_list}
            with open(os.path.join(self.out, f"{name}_eval_results.json"), "w") as f:
                json.dump(res, f)

    fake = types.ModuleType("vbench")
    fake.VBench = FakeVBench
    fake.__file__ = str(tmp_path / "vbench" / "__init__.py")
    monkeypatch.setitem(sys.modules, "vbench", fake)
    res = vb.evaluate_folder(video_folder, dims=["dynamic_degree", "subject_consistency"], backend="vbench",
                             progress=False)
    assert calls == [(["a_moving.mp4", "b_still.mp4"], ["dynamic_degree", "subject_consistency"], "custom_input")]
    assert res["backend"] == "vbench" and res["num_skipped"] == 2
    assert res["subject_consistency"] == {"score": 0.75, "kind": "exact", "per_video": [0.5, 1.0],
                                          "num_videos": 2, "backend": "vbench", "status": vb.NOT_RUN_HERE,
                                          "missing": []}
    assert res["status"].startswith("not run here")
    assert res["dynamic_degree"]["per_video"] == [True, True]
