"""A pipeline's text length (fastlight.data.latents.pipeline_text_len) and the latents source's pad mixing
(`text_pad`, `TextPad`): batches padded to a length drawn from a configured set, zeros past the stored tokens."""
from __future__ import annotations

import json

import pytest
import torch

from fastlight.data.latents import (INDEX_NAME, LatentShardSource, TextPad, _save_tensors_atomic, pad_text_batch,
                                    pipeline_text_len, write_pipeline_text_len)
from fastlight.data.source import build_source
from fastlight.errors import DataError

STORED, WIDTH, N = 6, 4, 8  # tokens per row in the shards, text width, rows


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A hand-made latents folder: N rows whose text has 3 non-zero tokens in STORED, recorded as STORED."""
    out = tmp_path_factory.mktemp("pad") / "shards"
    out.mkdir()
    gen = torch.Generator().manual_seed(0)
    text = torch.zeros(N, STORED, WIDTH)
    text[:, :3] = torch.randn(N, 3, WIDTH, generator=gen) + 3.0  # never zero
    mask = torch.zeros(N, STORED, dtype=torch.int64)
    mask[:, :3] = 1
    tensors = {"x0": torch.randn(N, 2, 1, 2, 2, generator=gen), "text": text, "text_mask": mask}
    sha = _save_tensors_atomic(out / "latents_00000.safetensors", tensors)
    index = {"format": "fastlight-latents/1", "num_samples": N, "text": {"source": "encoder", "length": STORED},
             "shards": [{"file": "latents_00000.safetensors", "num_samples": N, "bucket": [2, 2], "sha256": sha}]}
    (out / INDEX_NAME).write_text(json.dumps(index))
    return out


PAD = {"lengths": [STORED, 20], "probs": [0.75, 0.25]}


def test_batches_are_padded_to_a_drawn_length_with_exact_zeros(shards):
    plain = LatentShardSource(str(shards), batch_size=4)
    mixed = LatentShardSource(str(shards), batch_size=4, text_pad=PAD)
    assert plain.text_len == mixed.text_len == STORED
    seen = []
    for step in range(40):
        a, b = plain.batch(step), mixed.batch(step)
        n = b["text"].shape[1]
        seen.append(n)
        assert n in PAD["lengths"] and b["text"].shape == (4, n, WIDTH) and b["text_mask"].shape == (4, n)
        assert torch.equal(b["text"][:, :STORED], a["text"]) and torch.equal(b["text_mask"][:, :STORED], a["text_mask"])
        assert not b["text"][:, STORED:].abs().any() and not b["text_mask"][:, STORED:].any()
        assert torch.equal(b["x0"], a["x0"])  # only the text changes
    assert set(seen) == {STORED, 20} and 4 <= seen.count(20) <= 18  # ~a quarter of 40
    again = LatentShardSource(str(shards), batch_size=4, text_pad=PAD)  # a pure function of (seed, step)
    assert [again.batch(s)["text"].shape[1] for s in range(40)] == seen
    assert plain.batch(3)["text"].shape[1] == STORED  # off by default: the stored length


def test_every_rank_of_a_step_pads_to_the_same_length(shards):
    src = LatentShardSource(str(shards), batch_size=4, text_pad=PAD)
    for step in range(12):
        assert src.batch(step, 0, 2)["text"].shape[1] == src.batch(step, 1, 2)["text"].shape[1]


def test_certain_lengths_and_the_config_route(shards):
    always = LatentShardSource(str(shards), batch_size=2, text_pad={"lengths": [STORED, 512], "probs": [0, 1]})
    assert {always.batch(s)["text"].shape[1] for s in range(10)} == {512}
    src = build_source({"_component_": "latents", "path": str(shards), "text_pad": {"lengths": [9], "probs": [1.0]}},
                       batch_size=2, seed=0)
    assert src.batch(0)["text"].shape == (2, 9, WIDTH)


@pytest.mark.parametrize("pad, needle", [
    ({"lengths": [20], "probs": [1], "p": 0.1}, "no key 'p'"),
    ({"lengths": [STORED - 1, 20], "probs": [0.5, 0.5]}, "shorter than the 6 tokens"),
    ({"lengths": [8, 20], "probs": [0.5, 0.4]}, "sum to 1"),
    ({"lengths": [8, 20], "probs": [1.0]}, "one per length"),
    ({"lengths": [8, 8], "probs": [0.5, 0.5]}, "repeat"),
    ({"lengths": "512", "probs": [1.0]}, "list of whole numbers"),
    ([8, 512], "must be a mapping"),
])
def test_bad_text_pad_is_one_line(shards, pad, needle):
    with pytest.raises(DataError, match=needle) as e:
        LatentShardSource(str(shards), batch_size=2, text_pad=pad)
    assert "\n" not in str(e.value) and "text_pad" in str(e.value)


def test_a_bad_top_level_key_names_the_known_ones(shards):
    with pytest.raises(DataError, match="no option 'text_len'.*text_pad"):
        build_source({"_component_": "latents", "path": str(shards), "text_len": 8})


def test_draw_follows_the_probabilities():
    pad = TextPad((16, 512), (0.9, 0.1))
    gen = torch.Generator().manual_seed(0)
    draws = [pad.draw(gen) for _ in range(2000)]
    assert 120 <= draws.count(512) <= 280 and set(draws) == {16, 512}
    text, mask = pad_text_batch(torch.ones(2, 3, 4), torch.ones(2, 3), 5)
    assert text.shape == (2, 5, 4) and not text[:, 3:].any() and mask.tolist() == [[1, 1, 1, 0, 0]] * 2


def test_the_pipeline_folder_records_its_text_length(tmp_path):
    pipe = tmp_path / "pipe"
    (pipe / "tokenizer").mkdir(parents=True)
    assert pipeline_text_len(pipe) is None  # no record (a real download): the stock default applies
    write_pipeline_text_len(pipe, 24)
    assert pipeline_text_len(pipe) == 24
    (pipe / "tokenizer" / "fastlight_text.json").write_text('{"max_sequence_length": "long"}')
    with pytest.raises(DataError, match="whole number"):
        pipeline_text_len(pipe)
    with pytest.raises(DataError, match="no tokenizer/"):
        write_pipeline_text_len(tmp_path / "nothing", 16)
