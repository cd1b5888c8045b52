"""The pipeline run report's animation (rows of videos side by side) and its markdown-to-HTML page."""
from __future__ import annotations

import numpy as np
import pytest

from fastlight.data.video import read_video, write_video
from fastlight.errors import InputError
from fastlight.report.html import markdown_page
from fastlight.report.samples import LABEL_STRIP_PX, rows_gif


def _clip(tmp_path, name, colour, num_frames=5, size=32):
    frames = np.zeros((num_frames, size, size, 3), np.uint8)
    frames[..., 0] = colour
    for f in range(num_frames):  # a moving green bar (a GIF writer merges identical frames)
        frames[f, :, 2 * f, 1] = 255
    return write_video(tmp_path / f"{name}.gif", frames, fps=4)


def test_rows_gif_puts_each_row_under_its_label(tmp_path):
    rows = [("teacher", [_clip(tmp_path, f"t{i}", 200) for i in range(3)]),
            ("student", [_clip(tmp_path, f"s{i}", 50, num_frames=3) for i in range(3)])]
    info = rows_gif(rows, tmp_path / "out.gif", max_videos=2, gap_px=2)
    gif = read_video(tmp_path / "out.gif")
    assert info["videos_per_row"] == 2 and gif.shape == (5, 2 * (LABEL_STRIP_PX + 32), 2 * 32 + 2, 3)
    teacher = gif[:, LABEL_STRIP_PX:LABEL_STRIP_PX + 32, :32, 0].astype(int)
    student = gif[:, 2 * LABEL_STRIP_PX + 32:, :32, 0].astype(int)
    assert abs(teacher.mean() - 200) < 12 and abs(student.mean() - 50) < 12  # rows in order, short clips held
    assert gif[:, LABEL_STRIP_PX:LABEL_STRIP_PX + 32, 32:34].min() > 240  # the white gap between columns
    small = rows_gif(rows, tmp_path / "small.gif", max_videos=3, max_width_px=50, gap_px=1)
    assert small["shape"][2] <= 50 and small["videos_per_row"] == 3
    with pytest.raises(InputError, match="no videos"):
        rows_gif([("teacher", [])], tmp_path / "none.gif")


def test_markdown_page_embeds_images_and_tables(tmp_path):
    _clip(tmp_path, "samples", 100)
    lines = ["# run: fastlightgen", "", "score `x` <b>", "| row | score |", "|---|---|", "| teacher | 0.9 |", "",
             "## Samples", "![samples](samples.gif)"]
    page = markdown_page("run", lines, tmp_path)
    assert "<h1>run: fastlightgen</h1>" in page and "<h2>Samples</h2>" in page
    assert "<p>score <code>x</code> &lt;b&gt;</p>" in page
    assert "<th>row</th><th>score</th>" in page and "<td>teacher</td><td>0.9</td>" in page and "---" not in page
    assert 'src="data:image/gif;base64,' in page
