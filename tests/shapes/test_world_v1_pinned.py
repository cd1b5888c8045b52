"""The default world (v1: the shipped teacher's and `make demo`'s) is pinned: its clips, prompts,
encodings, data-source batches, ShapesBench cases and ideal scores are byte-identical to what they
were before the v2 world was added (hashes computed on the code before that change)."""
import hashlib

import pytest
import torch

from fastlight.shapes import bench as sb, text, world as shapes
from fastlight.shapes.source import ShapesSource


def _h(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]


def _hs(lines) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def test_default_world_clips_prompts_and_encodings_are_unchanged():
    clips = shapes.sample_clips(123, 6)
    assert _hs(c.prompt for c in clips) == "691539f74e292df6"
    assert _h(shapes.render_batch(clips)) == "d7797f5dc918e557"
    assert _h(text.encode([c.prompt for c in clips] + [""])) == "3e60d71bd797f3a0"
    p = shapes.place_objects([dict(colour="red", shape="square", direction="left", speed="quickly"),
                              dict(colour="blue", shape="circle", direction="still", speed="slowly")],
                             torch.Generator().manual_seed(9))
    assert p.prompt == "a red square moving left quickly and a blue circle staying still"
    assert _h(shapes.render(p)) == "3146a582cd2e9094"


def test_default_source_batches_and_bench_cases_are_unchanged():
    b = ShapesSource(batch_size=4, seed=5, stream="train").batch(3)
    assert [_h(b["x0"]), _h(b["text"]), _h(b["text_mask"]), _hs(b["prompts"])] == [
        "a67ace1ab68ffe40", "3b3defd5f1d64d91", "8c6c7e366c42fde5", "c6182c9d3055ecf0"]
    cases = sb.make_cases(4)
    assert _h(torch.stack([c.image for c in cases])) == "4337ad5335ddb19a"
    assert _hs(c.prompt for c in cases) == "5d63ec4abebca92f"


def test_default_ideal_scores_are_unchanged():
    r = sb.score_real(8, vbench=False)
    assert r["score"] == pytest.approx(0.9992671270848151, abs=1e-12)
    assert r["parts"]["speed"] == pytest.approx(0.9951141805654338, abs=1e-12)
    assert set(r["parts"]) == set(sb.WEIGHTS)
