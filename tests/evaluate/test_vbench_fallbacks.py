"""No silent fallbacks in `fastlight vbench`: unreadable videos named, a folder of unreadable videos an
error, images paired by name or refused, an assumed fps stated; exit 2, one line, nothing written."""
from __future__ import annotations

import json

import cv2
import pytest
from synthetic_videos import disk_clip

from fastlight.cli import main
from fastlight.data.video import write_video


def _one_line_error(capsys, args, out, *expected):
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for e in expected:
        assert e in err
    assert not out.exists() and not any(out.parent.glob(".*"))  # nothing (half-)written
    return err


def _png(path, frame):
    cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


@pytest.fixture()
def folder(tmp_path):
    d = tmp_path / "videos"
    d.mkdir()
    write_video(d / "a.mp4", disk_clip(24, [6 + t for t in range(8)]), fps=8)
    write_video(d / "b.mp4", disk_clip(24, [10.0] * 8), fps=16)
    (d / "broken.mp4").write_bytes(b"\x00not a video")
    return d


def test_unreadable_video_is_named_with_its_reason(folder, tmp_path, capsys):
    out = tmp_path / "res.json"
    assert main(["vbench", str(folder), "--dims", "dynamic_degree", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "scored 2 video(s) of 3" in printed and "skipped 1: broken.mp4" in printed
    assert "broken.mp4: cannot read video" in printed
    doc = json.loads(out.read_text())
    assert doc["skipped"] == ["broken.mp4"] and "cannot read video" in doc["unreadable"]["broken.mp4"]
    assert doc["videos"] == ["a.mp4", "b.mp4"] and doc["fps"] == {"a.mp4": 8.0, "b.mp4": 16.0}
    assert doc["fps_assumed"] == []


def test_all_unreadable_folder_is_an_error(tmp_path, capsys):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "x.mp4").write_bytes(b"")
    (d / "y.gif").write_bytes(b"GIF89a nope")
    err = _one_line_error(capsys, ["vbench", str(d)], tmp_path / "res.json",
                          "none of the 2 video(s)", "x.mp4", "y.gif")
    assert err.startswith("fastlight vbench: error:")


def test_images_must_match_videos_by_name(folder, tmp_path, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    frame = disk_clip(24, [6.0])[0]
    for name in ("a", "b", "broken"):
        _png(imgs / f"{name}.png", frame)
    out = tmp_path / "ok.json"
    assert main(["vbench", str(folder), "--images", str(imgs), "--dims", "i2v_subject", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["i2v_subject"]["num_videos"] == 2
    capsys.readouterr()
    (imgs / "b.png").rename(imgs / "zz.png")  # same count, wrong name: refused, not paired by order
    _one_line_error(capsys, ["vbench", str(folder), "--images", str(imgs), "--dims", "i2v_subject"],
                    tmp_path / "res.json", "do not match the videos by name", "no image for b.mp4", "no video for zz.png")
    _png(imgs / "b.jpg", frame)
    _png(imgs / "zz.jpg", frame)
    (imgs / "zz.png").rename(imgs / "b.png")  # b.png and b.jpg: which one?
    _one_line_error(capsys, ["vbench", str(folder), "--images", str(imgs), "--dims", "i2v_subject"],
                    tmp_path / "res.json", "two images for b", "no video for zz.jpg")


def test_missing_fps_is_stated(tmp_path, capsys):
    d = tmp_path / "v"
    d.mkdir()
    clip = disk_clip(24, [6 + t for t in range(8)])
    write_video(d / "timed.gif", clip, fps=8)
    # a GIF without frame durations: the file gives no fps
    from PIL import Image

    frames = [Image.fromarray(f) for f in clip]
    frames[0].save(d / "untimed.gif", save_all=True, append_images=frames[1:], loop=0)
    out = tmp_path / "res.json"
    assert main(["vbench", str(d), "--dims", "dynamic_degree", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fps assumed 8 (the file gives none" in printed and printed.rstrip().endswith("for 1: untimed.gif")
    doc = json.loads(out.read_text())
    assert doc["fps_assumed"] == ["untimed.gif"] and doc["fps"]["untimed.gif"] == 8.0
    assert doc["fps"]["timed.gif"] == pytest.approx(8.0, rel=0.05)
    assert main(["vbench", str(d), "--dims", "dynamic_degree", "--fps", "8"]) == 0
    assert "fps assumed" not in capsys.readouterr().out  # given: nothing assumed


def test_scorer_refuses_a_missing_fps():
    from fastlight.evaluate.vbench import dynamic_degree, score_videos

    v = disk_clip(24, [6 + t for t in range(8)])
    with pytest.raises(ValueError, match=r"^clip.mp4: fps None is not a positive number"):
        score_videos([v], fps=[None], dims=["dynamic_degree"], names=["clip.mp4"])
    with pytest.raises(ValueError, match="fps 0 is not a positive number"):
        dynamic_degree(v, 0)
