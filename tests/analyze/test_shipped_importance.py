"""Stage I on the shipped teacher: the ranking means something (issue 3, "what must be shown")."""
from fastlight.analyze.importance import elbo_importance, rows_spearman
from fastlight.models.load import load_denoiser
from fastlight.models.load import resolve_model_path
from fastlight.shapes.analysis import shapes_calibration


def test_least_important_block_hurts_less_than_most_important():
    model = load_denoiser(resolve_model_path("shapes-teacher")).eval()
    calib = shapes_calibration(model, num_samples=32, seed=0)
    rows = elbo_importance(model, calib, reference="data", progress=False)
    most = min(rows, key=lambda r: r["rank"])
    least = max(rows, key=lambda r: r["rank"])
    assert most["score"] - least["score"] > 2 * (most["stderr"] + least["stderr"]), (most, least)
    # skipping the least important block costs little but is not free
    assert 0 <= least["score"] < most["score"] / 3
    free = elbo_importance(model, calib, reference="self", progress=False)
    assert rows_spearman(rows, free) > 0.5
