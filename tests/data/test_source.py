import pytest
import torch

from fastlight.data.source import DataError, DataSource, build_source, local_batch_size, stream_seed
from fastlight.plugins import PluginError
from fastlight.shapes.source import ShapesSource


def test_shapes_source_is_a_pure_function_of_step_and_rank():
    src = build_source({"_component_": "shapes", "batch_size": 4}, seed=3)
    assert isinstance(src, ShapesSource) and isinstance(src, DataSource) and src.seed == 3
    a, b = src.batch(5), src.batch(5)
    assert torch.equal(a["x0"], b["x0"]) and torch.equal(a["text"], b["text"])
    assert a["x0"].shape == (4, 3, 8, 24, 24) and a["image"].shape == (4, 3, 1, 24, 24)
    assert torch.equal(a["image"], a["x0"][:, :, :1])
    assert not torch.equal(a["x0"], src.batch(6)["x0"])
    r0, r1 = src.batch(5, 0, 2), src.batch(5, 1, 2)
    assert r0["x0"].shape[0] == 2 and not torch.equal(r0["x0"], r1["x0"])
    assert torch.equal(torch.cat([r0["x0"], r1["x0"]]), a["x0"])  # 2 processes share the batch of one


def test_streams_are_disjoint_namespaces():
    seeds = {(st, step): stream_seed(0, st, step) for st in ("train", "calibration", "validation", "test")
             for step in range(200)}
    assert len(set(seeds.values())) == len(seeds)
    train = ShapesSource(batch_size=2, stream="train").batch(0)["x0"]
    calib = ShapesSource(batch_size=2, stream="calibration").batch(0)["x0"]
    assert not torch.equal(train, calib)


def test_bad_source_specs_name_the_problem():
    with pytest.raises(PluginError, match="unknown data component 'nope'.*shapes"):
        build_source("nope")
    with pytest.raises(DataError, match="no option 'colour'"):
        build_source({"_component_": "shapes", "colour": "red"})
    with pytest.raises(DataError, match="must name a source"):
        build_source({"batch_size": 2})
    with pytest.raises(DataError, match="does not divide across 3 processes"):
        local_batch_size(16, 3)
    with pytest.raises(DataError, match="p_two_objects"):
        ShapesSource(p_two_objects=2.0)


def test_a_source_can_be_named_by_module_path():
    src = build_source({"_component_": "fastlight.shapes.source:ShapesSource", "batch_size": 2})
    assert src.batch(0)["x0"].shape[0] == 2
