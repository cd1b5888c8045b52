"""Training, calibration, validation and test data never coincide (issue 16 item 4): the x0 of the
first batches / cases of every stream are compared clip by clip with torch.equal."""
import itertools

import pytest
import torch

from fastlight.analyze.calib import shapes_calibration
from fastlight.models.load import load_denoiser
from fastlight.shapes import bench as sb, world as shapes
from fastlight.shapes.source import ShapesSource

WORLD = shapes.WorldConfig()
LEGACY_STEPS = 4  # the shipped teacher's batches: torch.manual_seed(data_seed * 1_000_003 + step), data_seed 0


def _legacy_training_clips(step: int, batch_size: int = 16) -> torch.Tensor:
    """What the shipped teacher trained on at `step` (its recipe drew the batch's clips first)."""
    gen = torch.Generator().manual_seed(0 * 1_000_003 + step)
    return shapes.render_batch([shapes.sample_clip(gen, WORLD) for _ in range(batch_size)], WORLD)


def _calib_x0(model, stream: str, n: int = 32) -> torch.Tensor:
    return torch.cat([b.x0 for b in shapes_calibration(model, n, seed=0, stream=stream)])


@pytest.fixture(scope="module")
def streams(tiny_shapes_model):
    model = load_denoiser(tiny_shapes_model)
    train = ShapesSource(batch_size=16, seed=0, stream="train")
    return {
        "train": torch.cat([train.batch(step)["x0"] for step in range(LEGACY_STEPS)]),
        "shipped teacher's training": torch.cat([_legacy_training_clips(s) for s in range(LEGACY_STEPS)]),
        "calibration": _calib_x0(model, "calibration"),
        "validation (held-out calibration)": _calib_x0(model, "validation"),
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


def test_calibration_rows_are_the_sources_rows(tiny_shapes_model):
    """Calibration sample j is row j of the named stream's ShapesSource batch at step 0, whatever
    the calibration batch size."""
    model = load_denoiser(tiny_shapes_model)
    src = ShapesSource(batch_size=5, seed=0, stream="calibration").batch(0)["x0"]
    for bs in (2, 5):
        assert torch.equal(torch.cat([b.x0 for b in shapes_calibration(model, 5, seed=0, batch_size=bs)]), src)
