import json

import pytest

from fastlight.analyze.plans import depth_plan, write_plan
from fastlight.diffusion.spec import SamplerSpec
from fastlight.fileio import atomic_write_json
from fastlight.models.load import load_denoiser
from fastlight.prune import prune_model

FEW_STEP = (1000, 750, 500, 250)
# blocks each tiny pipeline's student drops (global ids): Wan 0..3; HunyuanVideo double 0, 1, single 2, 3
STUDENT_DROP = {"wan21-t2v": [2], "wan22-ti2v": [1], "hunyuan-t2v": [1, 2]}


@pytest.fixture(scope="module")
def student(tmp_path_factory, shapes_model_factory):
    """A tiny Shapes student: model/ inside a run folder, with a 4-step few-step sampler.json."""
    run = tmp_path_factory.mktemp("run")
    shapes_model_factory(run / "model", num_layers=2, perturb=0.1)
    (run / "model" / "sampler.json").write_text(json.dumps(
        {"sampler": "few_step", "timesteps": [1000.0, 750.0, 500.0, 250.0], "s_list": [1.0, 0.75, 0.5, 0.25],
         "cfg_scale": 1.0}))
    return run


def make_student(pipeline, run, drop, timesteps=FEW_STEP, guidance=1.0, teacher="pipeline"):
    """A student made from a real pipeline's transformer the way a run makes it: a Stage I depth plan
    that drops `drop` (`depth_plan` on scores ranking those blocks least important), `fastlight prune`'s
    surgery (`prune_model`: pruned config, manifest.json, plan.json), a few-step sampler.json as Stage III
    writes it, and fastlight.json's "teacher" naming the pipeline (`teacher="pipeline"`), another path,
    or nothing (None). Returns the run folder; the model is run/model."""
    den = load_denoiser(pipeline)
    params = {b.index: b.num_params for b in den.blocks}
    rows = [{"index": i, "score": 0.01 * drop.index(i) if i in drop else 1.0} for i in range(den.num_blocks)]
    # the greedy plan stops once the target is reached: aim between "all but the last" and "all" of drop
    target = (sum(params[i] for i in drop) - 0.5 * params[drop[-1]]) / den.num_params()
    plan = depth_plan(rows, den, target, keep_ends=False, verbose=False)
    assert list(plan.drop_blocks) == sorted(drop)
    plan_file = write_plan(run / "plan.json", plan)
    model = prune_model(str(pipeline), plan_file, run / "model")
    meta = json.loads((model / "fastlight.json").read_text())
    meta["kind"] = "fastlightgen-student"
    if teacher is None:
        meta.pop("pruned_from", None)
    else:
        meta["teacher"] = str(pipeline if teacher == "pipeline" else teacher)
    atomic_write_json(model / "fastlight.json", meta)
    SamplerSpec.few_step(timesteps, guidance=guidance).save(model)
    return run


@pytest.fixture(scope="session")
def student_maker():
    """`make_student(pipeline, run, drop, timesteps, guidance, teacher)` for tests that need their own."""
    return make_student


@pytest.fixture(scope="session")
def real_student(tiny_pipeline, tmp_path_factory):
    """`real_student(kind)` -> the run folder of a pruned few-step student of the tiny pipeline `kind`
    (STUDENT_DROP blocks dropped, timesteps 1000/750/500/250, guidance 1), made once per session."""
    made = {}

    def get(kind: str):
        if kind not in made:
            made[kind] = make_student(tiny_pipeline(kind), tmp_path_factory.mktemp(f"student_{kind}"),
                                      STUDENT_DROP[kind])
        return made[kind]

    return get
