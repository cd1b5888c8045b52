"""fastlight.diffusion.spec: the SamplerSpec value, its sampler.json (and the DMD recipe's older
form), a model's own sampler and explicit overrides of it."""
import json

import pytest

from fastlight.diffusion.grids import shifted_grid
from fastlight.diffusion.spec import SamplerError, SamplerSpec, choose_sampler, override, own_sampler

STUDENT = SamplerSpec.few_step((1000, 750, 500, 250))
TEACHER = SamplerSpec.euler(50, 4.0, 3.0)


def test_values_levels_and_nfe():
    assert TEACHER.levels == shifted_grid(50, 3.0).tolist() and TEACHER.nfe == 100
    assert STUDENT.levels == [1.0, 0.75, 0.5, 0.25] and STUDENT.nfe == 4 and STUDENT.num_steps == 4
    assert SamplerSpec.few_step((1000, 500), guidance=3).nfe == 4
    assert TEACHER.describe() == "50 Euler steps (shift 3), guidance 4"
    assert STUDENT.describe() == "4 few-step steps at timesteps 1000/750/500/250, no guidance"
    assert SamplerSpec.euler(50, 4, 3) == TEACHER  # a value: equal fields, equal specs
    with pytest.raises(Exception):
        TEACHER.num_steps = 4  # frozen


@pytest.mark.parametrize("make, words", [
    (lambda: SamplerSpec("ddim", 4, 1.0), "euler or few_step"),
    (lambda: SamplerSpec.euler(0), "steps must be a whole number >= 1"),
    (lambda: SamplerSpec.euler(4, guidance=float("nan")), "guidance must be a finite number"),
    (lambda: SamplerSpec.euler(4, shift=0), "shift > 0"),
    (lambda: SamplerSpec.few_step((500, 750)), "strictly decreasing"),
    (lambda: SamplerSpec.few_step(()), "steps must be a whole number >= 1"),
    (lambda: SamplerSpec("few_step", 3, 1.0, timesteps=(1000.0, 500.0)), "steps=3 but 2 timesteps"),
    (lambda: SamplerSpec("few_step", 1, 1.0, shift=3.0, timesteps=(1000.0,)), "shift only applies"),
    (lambda: SamplerSpec("euler", 2, 1.0, shift=3.0, timesteps=(1000.0, 500.0)), "timesteps only apply"),
])
def test_bad_values_one_line(make, words):
    with pytest.raises(SamplerError) as e:
        make()
    assert words in str(e.value) and "\n" not in str(e.value)


def test_save_load_round_trip_atomic(tmp_path):
    for spec in (TEACHER, STUDENT, SamplerSpec.few_step((1000, 757, 522), guidance=2.5)):
        spec.save(tmp_path)
        assert SamplerSpec.load(tmp_path) == spec
    assert json.loads((tmp_path / "sampler.json").read_text())["guidance"] == 2.5
    assert [p.name for p in tmp_path.iterdir()] == ["sampler.json"]  # no temp file left


def test_reads_the_dmd_recipes_older_form(tmp_path):
    """DmdRecipe.save_output writes {sampler, timesteps, s_list, cfg_scale}: read as guidance."""
    (tmp_path / "sampler.json").write_text(json.dumps(
        {"sampler": "few_step", "timesteps": [1000.0, 500.0], "s_list": [1.0, 0.5], "cfg_scale": 1.5}))
    assert SamplerSpec.load(tmp_path) == SamplerSpec.few_step((1000, 500), guidance=1.5)


@pytest.mark.parametrize("content, words", [
    ("{", "not valid JSON"),
    ('{"sampler": "ddim"}', "unknown sampler 'ddim'"),
    ('{"sampler": "few_step", "guidance": 1}', "no timesteps"),
    ('{"sampler": "euler", "stepz": 3}', "unknown key(s) ['stepz']"),
    ('{"sampler": "euler", "num_steps": "many"}', "steps must be a whole number"),
    ('[1, 2]', "JSON object"),
])
def test_bad_sampler_json_one_line(tmp_path, content, words):
    (tmp_path / "sampler.json").write_text(content)
    with pytest.raises(SamplerError) as e:
        SamplerSpec.load(tmp_path)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_own_sampler_of_model_run_and_pipeline_folders(tmp_path):
    model = tmp_path / "run" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "fastlight.json").write_text(json.dumps({"shift": 5.0}))
    spec, source = own_sampler(model)
    assert spec == SamplerSpec.euler(50, 4.0, 5.0) and "no sampler.json" in source  # the default, with its shift
    STUDENT.save(model)
    for path in (model, tmp_path / "run"):  # the run folder finds its model/
        assert own_sampler(path)[0] == STUDENT
    pipe = tmp_path / "pipe" / "transformer"
    pipe.mkdir(parents=True)
    (pipe / "config.json").write_text("{}")
    TEACHER.save(pipe)
    assert own_sampler(tmp_path / "pipe") == (TEACHER, f"from {pipe / 'sampler.json'}")


def test_overrides_of_an_euler_model():
    assert override(TEACHER) is TEACHER
    assert override(TEACHER, num_steps=28) == SamplerSpec.euler(28, 4.0, 3.0)
    assert override(TEACHER, guidance=1, shift=5) == SamplerSpec.euler(50, 1.0, 5.0)
    # switching the kind: what is not given takes the new kind's defaults
    assert override(TEACHER, sampler="few_step") == SamplerSpec.few_step((1000, 750, 500, 250), 1.0)
    assert override(TEACHER, sampler="few_step", num_steps=2) == SamplerSpec.few_step((1000, 500), 1.0)
    assert override(TEACHER, timesteps=(1000, 757, 522)) == SamplerSpec.few_step((1000, 757, 522), 1.0)
    with pytest.raises(SamplerError, match="shift only applies"):
        override(TEACHER, sampler="few_step", shift=2.0)
    with pytest.raises(SamplerError, match="timesteps only apply"):
        override(TEACHER, sampler="euler", timesteps=(1000, 500))
    with pytest.raises(SamplerError, match="euler or few_step"):
        override(TEACHER, sampler="ddim")


def test_partial_overrides_of_a_few_step_student_are_refused():
    for kw in ({"num_steps": 28}, {"guidance": 4.0}, {"shift": 3.0}, {"timesteps": (1000, 500)}):
        with pytest.raises(SamplerError) as e:
            override(STUDENT, **kw)
        msg = str(e.value)
        assert "few-step student" in msg and "--sampler" in msg and "\n" not in msg
    # naming the sampler makes the override explicit
    assert override(STUDENT, sampler="euler", num_steps=28, guidance=4) == SamplerSpec.euler(28, 4.0, 3.0)
    assert override(STUDENT, sampler="euler", default_shift=5.0) == SamplerSpec.euler(50, 4.0, 5.0)  # the model's shift
    assert override(STUDENT, sampler="few_step", num_steps=2) == SamplerSpec.few_step((1000, 500), 1.0)
    assert override(STUDENT, sampler="few_step") == STUDENT


def test_choose_sampler_says_which_it_used(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "fastlight.json").write_text(json.dumps({"shift": 5.0}))
    STUDENT.save(tmp_path)
    own = choose_sampler(tmp_path)
    assert own.spec == STUDENT and "the model's own" in own.line and "sampler.json" in own.line
    assert choose_sampler(tmp_path, sampler="few_step", num_steps=None).spec == STUDENT  # None = not given
    over = choose_sampler(tmp_path, sampler="euler", num_steps=28, guidance=4.0)
    assert over.spec == SamplerSpec.euler(28, 4.0, 5.0) and "explicit override" in over.line  # the model's shift
    assert STUDENT.describe() in over.line
    given = choose_sampler(tmp_path, TEACHER)
    assert given.spec == TEACHER and "set by the caller" in given.line
