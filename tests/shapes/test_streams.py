"""Training, calibration, validation and test data never coincide (issue 16 item 4): the x0 of the
first batches / cases of every stream are compared clip by clip with torch.equal."""
import itertools

import pytest
import torch

from fastlight.models.load import load_denoiser
from fastlight.shapes import bench as sb, world as shapes
from fastlight.shapes.source import ShapesSource

WORLD = shapes.WorldConfig()
LEGACY_STEPS = 4  # the shipped teacher's batches: torch.manual_seed(data_seed * 1_000_003 + step), data_seed 0


def _legacy_training_clips(step: int, batch_size: int = 16) -> torch.Tensor:
    """What the shipped teacher trained on at `step` (its recipe drew the batch's clips first)."""
    gen = torch.Generator().manual_seed(0 * 1_000_003 + step)
    return shapes.render_batch([shapes.sample_clip(gen, WORLD) for _ in range(batch_size)], WORLD)


def _stream_x0(stream: str, steps: int = 2) -> torch.Tensor:
    """The first batches of a named stream of the Shapes source (Stage I's calibration set is drawn
    as `ShapesSource(stream="calibration")` batches: analyze.calib.source_calibration on main)."""
    src = ShapesSource(batch_size=16, seed=0, stream=stream)
    return torch.cat([src.batch(step)["x0"] for step in range(steps)])


@pytest.fixture(scope="module")
def streams(tiny_shapes_model):
    model = load_denoiser(tiny_shapes_model)
    return {
        "train": _stream_x0("train", LEGACY_STEPS),
        "shipped teacher's training": torch.cat([_legacy_training_clips(s) for s in range(LEGACY_STEPS)]),
        "calibration": _stream_x0("calibration"),
        "validation (held-out set)": torch.cat([b.x0 for b in sb.heldout_calibration(model, 32, split="validation")]),
        "validation cases": sb.ideal_videos(sb.make_cases(32, WORLD, split="validation"), WORLD),
        "test cases": sb.ideal_videos(sb.make_cases(32, WORLD, split="test"), WORLD),
    }


def test_streams_never_share_a_clip(streams):
    for (name_a, a), (name_b, b) in itertools.combinations(streams.items(), 2):
        same = [(i, j) for i in range(len(a)) for j in range(len(b)) if torch.equal(a[i], b[j])]
        assert not same, f"{name_a} and {name_b} share clips {same[:3]}"


def test_the_check_catches_the_old_seeding(streams):
    """The old calibration (torch.manual_seed(0)) replayed the shipped teacher's step-0 batch: the
    comparison above would have failed."""
    gen = torch.Generator().manual_seed(0)
    old_calib = shapes.render(shapes.sample_clip(gen, WORLD), WORLD)
    assert torch.equal(old_calib, streams["shipped teacher's training"][0])


def test_heldout_set_is_the_validation_stream(tiny_shapes_model):
    """benchmarks/dpp_depths.py and the ablations' alpha use batch k of the validation stream, with
    noise from its own stream: reproducible, and a different split gives other clips."""
    model = load_denoiser(tiny_shapes_model)
    a = sb.heldout_calibration(model, 5, batch_size=3)
    assert [b.x0.shape[0] for b in a] == [3, 2] and a.info["stream"] == "validation"
    src = ShapesSource(batch_size=3, seed=0, stream="validation")
    assert torch.equal(a.batches[1].x0, src.batch(1)["x0"][:2])
    assert torch.equal(a.batches[0].cond.image, a.batches[0].x0[:, :, :1])
    b = sb.heldout_calibration(model, 5, batch_size=3)
    assert all(torch.equal(p.eps, q.eps) and torch.equal(p.s, q.s) for p, q in zip(a, b))
    t = sb.heldout_calibration(model, 5, batch_size=3, split="test")
    assert not torch.equal(a.batches[0].x0, t.batches[0].x0)
