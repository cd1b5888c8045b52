"""Labels that hold: a dimension says "exact" only when no weight-free stand-in takes part in its
score (checked by recording which stand-ins the code calls), and the command prints the label its
JSON holds; the official backend says "not run here"."""
from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import types

import numpy as np
import pytest
from synthetic_videos import disk_clip

from fastlight.cli import main
from fastlight.data.video import write_video
from fastlight.evaluate import vbench as vb

STAND_IN_NAMES = sorted({n for names in vb.STAND_INS.values() for n in names})


@pytest.fixture()
def recorded(monkeypatch):
    """Every stand-in wrapped, in every module of the package that binds it; the set of names called."""
    called: set[str] = set()
    pkg = importlib.import_module("fastlight.evaluate.vbench")
    mods = [pkg] + [importlib.import_module(f"{pkg.__name__}.{m.name}") for m in pkgutil.iter_modules(pkg.__path__)]
    for name in STAND_IN_NAMES:
        original = getattr(importlib.import_module("fastlight.evaluate.vbench"), name)

        def wrapper(*args, _name=name, _fn=original, **kwargs):
            called.add(_name)
            return _fn(*args, **kwargs)

        for mod in mods:
            if getattr(mod, name, None) is original:
                monkeypatch.setattr(mod, name, wrapper)
    return called


def _videos():
    still = disk_clip(24, [10.0] * 8)
    return [still, disk_clip(24, [6 + t for t in range(8)])]


@pytest.mark.parametrize("static_filter", [True, False])
@pytest.mark.parametrize("dim", sorted(vb.DIMENSIONS))
def test_label_matches_the_stand_ins_the_code_calls(dim, static_filter, recorded):
    vids = _videos()
    res = vb.score_videos(vids, images=[v[0] for v in vids], dims=[dim], static_filter=static_filter)[dim]
    assert recorded == set(vb.stand_ins(dim, static_filter)), dim
    kind = res["kind"]
    assert kind == vb.dimension_kind(dim, static_filter)
    if kind == "exact":
        assert not recorded and res["score"] is not None
    elif kind == "proxy":
        assert recorded and res["score"] is not None
    else:
        assert kind == "n/a" and res["score"] is None


def test_temporal_flickering_exact_only_without_the_filter():
    vids = _videos()
    on = vb.score_videos(vids, dims=["temporal_flickering"])["temporal_flickering"]
    off = vb.score_videos(vids, dims=["temporal_flickering"], static_filter=False)["temporal_flickering"]
    assert (on["kind"], on["static_filter"], on["num_scored"]) == ("proxy", True, 1)  # the moving clip is left out
    assert (off["kind"], off["static_filter"], off["num_scored"]) == ("exact", False, 2)
    f = vids[1].astype(np.float32)
    want = (255 - np.abs(f[1:] - f[:-1]).reshape(7, -1).mean(1).mean()) / 255
    assert off["per_video"][1] == pytest.approx(float(want), abs=1e-6)


def test_printed_labels_are_the_json_labels(tmp_path, capsys):
    d = tmp_path / "v"
    d.mkdir()
    for i, v in enumerate(_videos()):
        write_video(d / f"{i}.mp4", v, fps=8)
    for flag in ([], ["--no-static-filter"]):
        out = tmp_path / f"res{len(flag)}.json"
        assert main(["vbench", str(d), "--out", str(out), *flag]) == 0
        printed = {ln.split()[0]: ln.split()[1] for ln in capsys.readouterr().out.splitlines()
                   if ln.split() and ln.split()[0] in vb.DIMENSIONS}
        doc = json.loads(out.read_text())
        assert printed == {k: doc[k]["kind"] for k in vb.DIMENSIONS if k in doc}
        assert printed["temporal_flickering"] == ("exact" if flag else "proxy")


def test_official_backend_says_not_run_here(tmp_path, monkeypatch, capsys):
    d = tmp_path / "v"
    d.mkdir()
    for i, v in enumerate(_videos()):
        write_video(d / f"{i}.mp4", v, fps=8)

    class StandIn:  # the vbench package's interface, as the adapter calls it
        def __init__(self, device, full_info, output_path):
            self.out = output_path

        def evaluate(self, videos_path, name, dimension_list=None, **kw):
            import os

            os.makedirs(self.out, exist_ok=True)
            with open(os.path.join(self.out, f"{name}_eval_results.json"), "w") as f:
                json.dump({dim: [0.5, []] for dim in dimension_list}, f)

    fake = types.ModuleType("vbench")
    fake.VBench, fake.__file__ = StandIn, str(tmp_path / "vbench" / "__init__.py")
    monkeypatch.setitem(sys.modules, "vbench", fake)
    out = tmp_path / "res.json"
    assert main(["vbench", str(d), "--backend", "vbench", "--dims", "subject_consistency", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("backend vbench: not run here")
    # the stand-in returned no per-video results: said, not filled in
    assert "subject_consistency: vbench returned no per-video result for 0.mp4, 1.mp4" in lines
    doc = json.loads(out.read_text())
    assert doc["subject_consistency"]["missing"] == ["0.mp4", "1.mp4"]
    assert doc["status"] == vb.NOT_RUN_HERE and doc["subject_consistency"]["status"] == vb.NOT_RUN_HERE
