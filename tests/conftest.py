import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def save_tiny_shapes_model(path, num_layers: int = 2, perturb: float = 0.0, sampler=None):
    """A tiny untrained Shapes-world Wan saved like the shipped teacher. Untrained Wan blocks start
    near-identity (zero-init modulation): `perturb` adds noise to the blocks so every block acts.
    `sampler`: a SamplerSpec to save as its sampler.json (none: the default Euler sampler applies)."""
    from fastlight.shapes.preset import SHAPES_TEACHER_CONFIG
    from fastlight.models.wan import WanDenoiser

    torch.manual_seed(0)
    cfg = dict(SHAPES_TEACHER_CONFIG, num_layers=num_layers, attention_head_dim=8, ffn_dim=32, freq_dim=16)
    m = WanDenoiser.from_config(**cfg)
    if perturb:
        with torch.no_grad():
            for p in m.model.blocks.parameters():
                p.add_(perturb * torch.randn_like(p))
    m.save(path, {"kind": "shapes-teacher", "world": {"size": 24, "num_frames": 8}, "shift": 3.0})
    if sampler is not None:
        sampler.save(path)
    return path


@pytest.fixture(scope="session")
def shapes_model_factory():
    """`save_tiny_shapes_model(path, num_layers, perturb)` for tests that need their own size."""
    return save_tiny_shapes_model


@pytest.fixture(scope="session")
def tiny_shapes_model(tmp_path_factory):
    """A 2-block Shapes-world Wan model (untrained), saved like the shipped teacher."""
    return save_tiny_shapes_model(tmp_path_factory.mktemp("models") / "tiny_shapes")


@pytest.fixture(scope="session")
def tiny4(tmp_path_factory):
    """A perturbed 4-block Shapes Wan and a depth plan that drops block 2: (model path, plan path)."""
    from fastlight.analyze.plans import depth_plan, write_plan
    from fastlight.models.load import load_denoiser

    root = tmp_path_factory.mktemp("tiny4")
    path = save_tiny_shapes_model(root / "tiny4", num_layers=4, perturb=0.05)
    rows = [{"index": i, "score": sc} for i, sc in enumerate([1.0, 0.9, 0.1, 1.0])]
    plan = depth_plan(rows, load_denoiser(path), 0.05, keep_ends=True, verbose=False)
    assert plan["drop_blocks"] == [2]
    return path, write_plan(root / "plan.json", plan)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """`tiny_pipeline(kind)` -> the folder of a tiny random-weight diffusers pipeline of `kind`
    (fastlight.models.tiny_pipelines.KINDS: wan21-t2v, wan22-ti2v, hunyuan-t2v), written once per session."""
    from fastlight.models.tiny_pipelines import write_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny_pipelines")
    made = {}

    def get(kind: str):
        if kind not in made:
            made[kind] = write_tiny_pipeline(kind, root / kind)
        return made[kind]

    return get
