"""`fastlight fvd REAL GENERATED --detector FILE` end to end with a small scripted stand-in detector:
the number equals the library's, the output says "not run here", bad input is one line + exit 2 and
writes nothing, and a pickle is refused without being unpickled."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from synthetic_videos import disk_clip
from torch import nn

from fastlight.cli import main
from fastlight.data.video import read_video, write_video
from fastlight.evaluate.fvd import NOT_RUN_HERE, fvd_folders, frechet_distance_features, i3d_features, load_i3d


class StandInDetector(nn.Module):
    """The StyleGAN-V I3D's call signature with 6 cheap features (mean colour, mean motion)."""

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False):
        colour = x.mean(dim=(2, 3, 4))  # (B, 3)
        motion = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(2, 3, 4))  # (B, 3)
        return torch.cat([colour, motion], dim=1)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    path = tmp_path_factory.mktemp("det") / "detector.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(StandInDetector().eval()), str(path))
    return path


def _folder(root, name, speeds, colour=(220, 40, 40)):
    d = root / name
    d.mkdir()
    for i, k in enumerate(speeds):
        write_video(d / f"{i}.mp4", disk_clip(24, [6 + k * t for t in range(8)], col=colour), fps=8)
    return d


def test_fvd_verb_end_to_end(tmp_path, detector, capsys):
    real = _folder(tmp_path, "real", [0.5, 1.0, 1.5, 2.0])
    close = _folder(tmp_path, "close", [0.6, 1.1, 1.4, 1.9])
    far = _folder(tmp_path, "far", [0.0, 0.0, 0.1, 0.0], colour=(40, 40, 220))
    (close / "broken.gif").write_bytes(b"GIF89a nope")
    out = tmp_path / "fvd.json"
    assert main(["fvd", str(real), str(close), "--detector", str(detector), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FVD_16 ") and "4 real vs 4 generated video(s)" in lines[0]
    assert lines[1] == f"detector status: {NOT_RUN_HERE}"
    assert lines[2].startswith("skipped generated broken.gif: cannot read video")
    doc = json.loads(out.read_text())
    assert doc["status"].startswith("not run here") and list(doc["unreadable"]["generated"]) == ["broken.gif"]
    # the same number as the library on the decoded frames
    det = load_i3d(detector)
    frames = [[read_video(p) for p in sorted(d.glob("*.mp4"))] for d in (real, close)]
    want = frechet_distance_features(i3d_features(frames[0], det), i3d_features(frames[1], det))
    assert doc["fvd"] == pytest.approx(want, rel=1e-9)
    assert fvd_folders(real, far, detector)["fvd"] > 10 * doc["fvd"] > 0  # another distribution is far away


def test_fvd_verb_bad_input_is_one_line(tmp_path, detector, capsys):
    real = _folder(tmp_path, "real", [0.5, 1.0])
    one = _folder(tmp_path, "one", [1.0])
    out = tmp_path / "fvd.json"
    not_ts = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, not_ts)
    cases = [(["fvd", str(real), str(one), "--detector", str(detector)], "1 readable video(s), FVD needs at least 2"),
             (["fvd", str(real), str(tmp_path / "nope"), "--detector", str(detector)], "not a folder of videos"),
             (["fvd", str(real), str(real), "--detector", str(tmp_path / "missing.pt")], "i3d_torchscript.pt"),
             (["fvd", str(real), str(real), "--detector", str(not_ts)], "is not a TorchScript file")]
    for args, expected in cases:
        assert main([*args, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
        assert not out.exists()


class _Boom:
    def __reduce__(self):
        return (open, (str(_Boom.marker), "w"))


def test_a_pickle_is_never_unpickled(tmp_path, capsys):
    _Boom.marker = tmp_path / "unpickled"
    evil = tmp_path / "evil.pt"
    torch.save({"x": _Boom()}, evil)  # unpickling this file (a full, not weights-only, load) would create the marker
    real = _folder(tmp_path, "real", [0.5, 1.0])
    assert main(["fvd", str(real), str(real), "--detector", str(evil)]) == 2
    assert "is not a TorchScript file" in capsys.readouterr().err
    assert not _Boom.marker.exists()


class Raises(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(5, -1)  # 2 * 3 * 16 * 224 * 224 values do not split into 5 rows


class WrongShape(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(3, -1)  # 3 rows for a batch of 2


@pytest.mark.parametrize("module, expected", [(Raises, "the detector failed on a (2, 3, 16, 224, 224) batch"),
                                              (WrongShape, "not one feature vector per video (2, D)")])
def test_detector_that_fails_is_one_line(tmp_path, capsys, module, expected):
    path = tmp_path / "wrong.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module()), str(path))
    real = _folder(tmp_path, "real", [0.5, 1.0])
    assert main(["fvd", str(real), str(real), "--detector", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
