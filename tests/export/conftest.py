import json

import pytest


@pytest.fixture(scope="module")
def student(tmp_path_factory, shapes_model_factory):
    """A tiny Shapes student: model/ inside a run folder, with a 4-step few-step sampler.json."""
    run = tmp_path_factory.mktemp("run")
    shapes_model_factory(run / "model", num_layers=2, perturb=0.1)
    (run / "model" / "sampler.json").write_text(json.dumps(
        {"sampler": "few_step", "timesteps": [1000.0, 750.0, 500.0, 250.0], "s_list": [1.0, 0.75, 0.5, 0.25],
         "cfg_scale": 1.0}))
    return run
