"""The Shapes pipeline's text length end to end: the folder records a short one (every prompt whole),
the shards are encoded and stored at it, the stock pipeline at that length gives the same phrase tokens
as at 512, a length that would cut prompts is refused; `fastlight bench --pipeline` loads a Shapes folder
in a fresh process and passes the length to the stock __call__."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastlight.data.latents import LatentShardSource, pipeline_text_len
from fastlight.errors import InputError
from fastlight.shapes import text, text_model
from fastlight.shapes.latent_data import write_shapes_shards
from fastlight.shapes.pipeline_folder import check_text_len, latent_transformer, write_shapes_pipeline
from tests.entry_points import PHRASE_ENCODER, write_dist_info

ROOT = Path(__file__).resolve().parents[2]
TWO = "a blue square staying still and a green triangle moves up slowly"


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    return write_shapes_pipeline(tmp_path_factory.mktemp("textlen") / "pipe", transformer=latent_transformer(0, num_layers=2))


def test_the_folder_records_the_short_length_of_its_world(pipe_dir):
    assert text_model.prompt_tokens("v1") == 14 and text_model.prompt_tokens("v2") == 21
    assert pipeline_text_len(pipe_dir) == text_model.short_text_len("v1") == 16
    assert check_text_len(None, "v2") == 24 and check_text_len(512, "v2") == 512
    for short in (8, 13):
        with pytest.raises(InputError, match="text_len must be a whole number >= 14"):
            check_text_len(short, "v1")


def test_the_stock_pipeline_at_the_short_length_sees_every_prompt_whole(pipe_dir):
    """At 16 tokens the stock encode_prompt gives text.encode(prompt), as at 512 (WanPipeline.__call__'s
    default); at 8 it cuts a
    two-object prompt, and the phrase encoder refuses the stump."""
    from diffusers import WanPipeline

    pipe = WanPipeline.from_pretrained(str(pipe_dir))
    want = text.encode([TWO])[0]
    short = pipe.encode_prompt(TWO, do_classifier_free_guidance=False, max_sequence_length=16)[0][0]
    full = pipe.encode_prompt(TWO, do_classifier_free_guidance=False, max_sequence_length=512)[0][0]  # __call__'s default
    assert short.shape == (16, 32) and full.shape == (512, 32)
    assert torch.equal(short[:2], want) and torch.equal(full[:16], short) and not full[16:].abs().any()
    with pytest.raises(text.PromptError):
        pipe.encode_prompt(TWO, do_classifier_free_guidance=False, max_sequence_length=8)


def test_shards_are_stored_at_the_pipelines_length(pipe_dir, tmp_path):
    index = write_shapes_shards(tmp_path / "s", pipe_dir, 4, shard_size=4, batch_size=4, progress=False)
    assert index["text"]["length"] == 16
    src = LatentShardSource(str(tmp_path / "s"), batch_size=4, pipeline=str(pipe_dir),
                            text_pad={"lengths": [16, 512], "probs": [0.5, 0.5]})
    assert src.text_len == 16 and {src.batch(s)["text"].shape[1] for s in range(8)} == {16, 512}
    long = write_shapes_shards(tmp_path / "l", pipe_dir, 2, text_len=512, progress=False)
    assert long["text"]["length"] == 512 and LatentShardSource(str(tmp_path / "l"), batch_size=2).text_len == 512
    with pytest.raises(InputError, match="would cut prompts"):
        write_shapes_shards(tmp_path / "cut", pipe_dir, 2, text_len=8, progress=False)
    assert not (tmp_path / "cut").exists()


def _register_components(folder: Path) -> Path:
    """pyproject's fastlight.pipeline_components entry point (for an install whose metadata predates it)."""
    return write_dist_info(folder, "fastlight-pipeline-components-textlen", "fastlight.pipeline_components",
                           [PHRASE_ENCODER])


def test_bench_pipeline_loads_a_shapes_folder_in_a_fresh_process(pipe_dir, tmp_path):
    """`fastlight bench --pipeline FOLDER` in a process that never imported fastlight.shapes: the bench
    imports the registered phrase encoder before diffusers loads the folder, and calls the stock
    pipeline with the folder's own text length."""
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(_register_components(tmp_path / "ep"))])}
    args = ["bench", "--pipeline", f"{pipe_dir}:steps=2,guidance=1", "--prompt", "a red circle moving left quickly",
            "--num-frames", "5", "--height", "32", "--width", "32", "--repeats", "1", "--warmup", "0",
            "--out", str(out)]
    code = ("import sys\nfrom fastlight.cli import main\n"
            "assert 'fastlight.shapes.text_model' not in sys.modules\n"
            "sys.exit(main(sys.argv[1:]))\n")
    res = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    row = json.loads(out.read_text())["rows"][0]
    assert row["max_sequence_length"] == 16 and row["nfe"] == 2 and row["pipeline"] == "WanPipeline"
