"""`fastlight run`'s Stage I and plan stages on a tiny Shapes model: same defaults, the plan value on disk."""
import pytest

from fastlight.analyze.importance import read_importance
from fastlight.analyze.plans import read_plan
from fastlight.models.load import load_denoiser
from fastlight.run.pipeline import Run, RunConfig, resolve, stage_analyze, stage_plan


@pytest.mark.parametrize("method, analysis, kind", [("fastlightgen", "elbo", "depth"), ("vdmini", "metric", "depth"),
                                                    ("lightning", "taylor", "width")])
def test_analyze_and_plan_stages(shapes_model_factory, tmp_path, method, analysis, kind):
    model_dir = shapes_model_factory(tmp_path / "m", num_layers=4, perturb=0.05)
    run = Run(resolve(RunConfig(out=str(tmp_path / "run"), method=method, teacher=str(model_dir), calib=4,
                                metric_cases=2, prune_ratio=0.05)))
    summary = stage_analyze(run)
    assert summary["method"] == analysis
    model = load_denoiser(model_dir)
    if analysis != "taylor":
        name = "importance_metric.json" if analysis == "metric" else "importance.json"
        doc = read_importance(run.dir("1_analyze") / name, model)
        assert len(doc["blocks"]) == 4
        if analysis == "elbo":  # the run's defaults: the Shapes calibration stream, 4 samples, no data-free pass
            assert doc["calib"]["stream"] == "calibration" and doc["calib"]["num_samples"] == 4
            assert "data_free" not in doc
    p = stage_plan(run)
    plan = read_plan(run.plan, model)
    assert p["kind"] == kind == plan.type and p["removed_fraction"] == plan.achieved_ratio >= 0.05
    assert p["drop_blocks"] == (list(plan.drop_blocks) if kind == "depth" else None)
