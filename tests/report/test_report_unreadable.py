"""`fastlight report` names every JSON it could not read (output, report.md, report.html, report.json),
refuses a run folder with no readable result in one line without writing anything, and labels each
VBench-style column by what computed it."""
from __future__ import annotations

import json

import pytest

from fastlight.cli import main
from fastlight.report import collect


def _sb(score, vbench):
    return {"model": "m", "sampler": "euler", "num_steps": 4, "cfg_scale": 1.0, "skip": [], "num_cases": 2,
            "nfe_per_video": 4, "params": 10, "params_full": 10, "score": score, "parts": {}, "metrics": {},
            "vbench": vbench, "files": []}


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if isinstance(text, str) else json.dumps(text))


TF_OLD = {"score": 0.9, "kind": "exact"}  # written before the label fix: the static filter ran (OpenCV flow)


def test_unreadable_json_is_named_everywhere(tmp_path, capsys):
    _write(tmp_path / "good" / "shapesbench.json", _sb(0.8, {"temporal_flickering": TF_OLD}))
    _write(tmp_path / "broken" / "shapesbench.json", '{"score": 0.9, ')
    _write(tmp_path / "empty" / "shapesbench.json", {"benchmark": "shapesbench"})
    _write(tmp_path / "bench" / "bench.json", "[not json")
    _write(tmp_path / "analyze" / "importance.json", {"method": "elbo"})
    _write(tmp_path / "notes.json", {"fine": True})  # readable, just not a result: not listed
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    expected = {"broken/shapesbench.json": "not valid JSON", "empty/shapesbench.json": "not a ShapesBench result (no finite score)",
                "bench/bench.json": "not valid JSON", "analyze/importance.json": "not an importance file (no blocks list)"}
    line = next(ln for ln in out.splitlines() if ln.startswith("report: 4 JSON file(s)"))
    doc = json.loads((tmp_path / "report" / "report.json").read_text())
    assert {u["file"]: u["reason"] for u in doc["unreadable"]}.keys() == expected.keys()
    md = (tmp_path / "report" / "report.md").read_text()
    html = (tmp_path / "report" / "report.html").read_text()
    assert "## Files not read" in md and "4 JSON file(s) could not be read" in md
    for f, why in expected.items():
        assert f in line and why in line
        assert f"{f} ({why}" in md and f in html
    assert "notes.json" not in line


def test_no_readable_result_is_one_line_and_writes_nothing(tmp_path, capsys):
    _write(tmp_path / "a" / "shapesbench.json", "{oops")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no shapesbench.json" in err and "could not read a/shapesbench.json (not valid JSON" in err
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("entries, label", [
    ([TF_OLD], "proxy"),  # relabelled: the builtin static filter is not VBench's
    ([{"score": 0.9, "kind": "exact", "static_filter": False}], "exact"),
    ([{"score": 0.9, "kind": "exact", "backend": "vbench"}], "exact, not run here"),
    ([TF_OLD, {"score": 0.9, "kind": "exact", "static_filter": False}], "exact/proxy"),  # rows disagree
])
def test_dimension_labels_follow_what_computed_them(tmp_path, entries, label):
    for i, e in enumerate(entries):
        _write(tmp_path / f"m{i}" / "shapesbench.json", _sb(0.8 - i / 10, {"temporal_flickering": e}))
    data = collect(tmp_path)
    assert data["dims"] == [{"name": "temporal_flickering", "kind": label}]
    assert main(["report", str(tmp_path)]) == 0
    assert f"Temporal flickering ({label})" in (tmp_path / "report" / "report.md").read_text()
