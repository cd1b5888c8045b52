"""Test helper: register pyproject entry points for an install whose metadata predates them."""
from __future__ import annotations

from pathlib import Path

PHRASE_ENCODER = "shapes-phrase-encoder = fastlight.shapes.text_model:ShapesPhraseEncoder"


def write_dist_info(folder: Path, name: str, group: str, lines: list[str]) -> Path:
    """A `NAME-0.dist-info` in `folder` whose entry_points.txt registers `lines` under `group`; returns `folder`
    (put it on sys.path / PYTHONPATH)."""
    info = folder / f"{name.replace('-', '_')}-0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n" + "\n".join(lines) + "\n")
    return folder
