"""The README's Python quick start ("Compress your own Wan") runs as written, on the tiny pipeline, so it cannot rot."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- quickstart: executed by tests/test_readme_quickstart.py -->"


def quickstart_code() -> str:
    """The ```python block right after the README's quickstart marker."""
    text = (ROOT / "README.md").read_text()
    assert text.count(MARKER) == 1, "the README must mark exactly one quick start block"
    m = re.match(r"\s*```python\n(.*?)\n```", text.split(MARKER, 1)[1], re.S)
    assert m, "the quickstart marker must be followed by a ```python block"
    return m.group(1)


def test_readme_quickstart_runs(tmp_path, monkeypatch):
    # from the repository root as the README says, but writing runs/ into a scratch folder: the code's
    # relative paths (configs/..., runs/...) resolve in tmp_path, where configs/ links to the real one
    (tmp_path / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    code = quickstart_code()
    assert "run_from_config" in code and "WanPipeline.from_pretrained" in code
    scope: dict = {}
    exec(compile(code, "README.md quickstart", "exec"), scope)
    video = np.asarray(scope["video"])
    assert video.shape == (9, 32, 32, 3) and np.isfinite(video).all()
    assert scope["state"]["stages"]["2_plan"]["summary"]["drop_blocks"]  # the plan removed blocks
    assert (tmp_path / "runs" / "quickstart" / "run" / "export" / "pipeline" / "model_index.json").is_file()
