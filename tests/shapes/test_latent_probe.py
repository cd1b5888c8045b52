"""The latent teacher's prompt probe (`shapes-latent-probe`): the probe batch is the folder's world encoded as
its shards are, a model that ignores the text has sensitivity 0, a random one > 0, the oracle's direction
reading is right on true clips and wrong on swapped ones, and the hook runs on its schedule."""
from __future__ import annotations

import pytest
import torch

from fastlight.errors import ConfigError, MissingFileError
from fastlight.models.load import load_denoiser
from fastlight.shapes import world as shapes
from fastlight.shapes.latent_probe import LatentPromptProbe, _direction_ok, latent_probe, latent_probe_set
from fastlight.shapes.pipeline_folder import latent_transformer, write_shapes_pipeline
from fastlight.shapes.probe import probe_set


@pytest.fixture(scope="module")
def v2_pipe(tmp_path_factory):
    return write_shapes_pipeline(tmp_path_factory.mktemp("probe") / "pipe", world="v2",
                                 transformer=latent_transformer(0, num_layers=2))


@pytest.fixture(scope="module")
def probe_data(v2_pipe):
    return latent_probe_set(v2_pipe, 9, n=4)


def test_probe_batch_is_the_folders_world_as_the_shards_encode_it(probe_data):
    data, vae = probe_data
    assert data.world.name == "v2" and data.world.num_frames == 9
    assert data.x0.shape == (4, 16, 3, 8, 8) and data.text.shape == data.text_swapped.shape == (4, 24, 32)
    assert not torch.equal(data.text, data.text_swapped) and not torch.equal(data.eps, data.eps_other)
    assert all(len(c.objects) == 1 and c.objects[0].direction != "still" for c in data.clips)
    video = shapes.render_batch(data.clips[:1], data.world)
    torch.testing.assert_close(data.x0[:1], vae.encode(video))


def test_sensitivity_is_zero_when_the_text_is_ignored(v2_pipe, probe_data):
    model = load_denoiser(v2_pipe / "transformer").eval()
    res = latent_probe(model, *probe_data)
    assert res["prompt_sensitivity"] > 0 and res["prompt_sensitivity_vs_noise"] > 0
    assert 0 <= res["probe_direction_acc"] <= 1
    text_in = model.model.condition_embedder.text_embedder
    with torch.no_grad():
        for p in text_in.parameters():
            p.zero_()
    deaf = latent_probe(model, *probe_data)
    assert deaf["prompt_sensitivity"] == 0 and deaf["prompt_sensitivity_vs_noise"] == 0


def test_direction_reading_on_true_and_swapped_clips():
    world = shapes.world_from_name("v2", num_frames=9)
    _, clips, swapped, video, _ = probe_set(world.to_dict(), 6)
    assert all(_direction_ok(video[i], c, world) for i, c in enumerate(clips))
    assert not any(_direction_ok(video[i], c, world) for i, c in enumerate(swapped))
    v1 = shapes.world_from_name("v1")
    _, clips, swapped, video, _ = probe_set(v1.to_dict(), 6)
    assert all(_direction_ok(video[i], c, v1) for i, c in enumerate(clips))
    assert not any(_direction_ok(video[i], c, v1) for i, c in enumerate(swapped))


def test_hook_runs_on_its_schedule_and_refuses_bad_settings(v2_pipe, tmp_path):
    model = load_denoiser(v2_pipe / "transformer")
    model.train()
    hook = LatentPromptProbe(pipeline=str(v2_pipe), every=5, num_cases=2)
    assert hook(3, model) is None
    res = hook(5, model)
    assert set(res) == {"prompt_sensitivity", "prompt_sensitivity_vs_noise", "probe_direction_acc"} and model.training
    with pytest.raises(ConfigError, match="every"):
        LatentPromptProbe(pipeline=str(v2_pipe), every=0)
    with pytest.raises(MissingFileError, match="not a pipeline folder"):
        LatentPromptProbe(pipeline=str(tmp_path / "nope"))
