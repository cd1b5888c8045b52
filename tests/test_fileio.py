"""fastlight.fileio: atomic writes and the one JSON rule (non-finite floats -> null, strict JSON)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fastlight.fileio import atomic_dir, atomic_path, atomic_write_json, atomic_write_text, to_json_safe


def test_to_json_safe_rule():
    obj = {1: float("nan"), "inf": [float("inf"), -math.inf, 2.5], "t": (1, 2), "np": np.float32(0.5),
           "np_nan": np.float64("nan"), "arr": np.array([1.0, np.nan]), "tensor": torch.tensor([[1, 2]]),
           "scalar": torch.tensor(3.0), "bool": np.bool_(True), "path": Path("a/b"), "none": None, "s": "x"}
    assert to_json_safe(obj) == {"1": None, "inf": [None, None, 2.5], "t": [1, 2], "np": 0.5, "np_nan": None,
                                 "arr": [1.0, None], "tensor": [[1, 2]], "scalar": 3.0, "bool": True,
                                 "path": "a/b", "none": None, "s": "x"}
    assert to_json_safe(True) is True and isinstance(to_json_safe(np.int64(3)), int)


def test_atomic_write_json_is_strict_and_leaves_no_temp(tmp_path):
    path = atomic_write_json(tmp_path / "sub" / "a.json", {"x": float("nan"), "y": np.arange(3)})
    text = path.read_text()
    assert "NaN" not in text and json.loads(text) == {"x": None, "y": [0, 1, 2]}
    assert atomic_write_json(tmp_path / "b.json", {"b": 1, "a": 2}, sort_keys=True).read_text().index('"a"') < 20
    with pytest.raises(TypeError):  # not JSON data: refused, and no file (not even a temporary one) is left
        atomic_write_json(tmp_path / "c.json", {"x": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "sub"]
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.json"]


def test_atomic_path_keeps_the_old_file_on_error(tmp_path):
    target = atomic_write_text(tmp_path / "t.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_atomic_dir_replaces_whole_folder_or_nothing(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as d:
        (d / "a.txt").write_text("1")
    assert [p.name for p in out.iterdir()] == ["a.txt"]
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as d:
            (d / "b.txt").write_text("half")
            raise RuntimeError("crash while saving")
    assert [p.name for p in out.iterdir()] == ["a.txt"]  # untouched
    with atomic_dir(out) as d:
        (d / "c.txt").write_text("2")
    assert [p.name for p in out.iterdir()] == ["c.txt"]  # replaced, not merged
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary or old folder left
