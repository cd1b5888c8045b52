"""The embedded Shapes teacher: its architecture and the shipped folder (the `shapes-teacher` preset)."""
from __future__ import annotations

from pathlib import Path

from fastlight.shapes.text import TEXT_DIM

# The embedded teacher: diffusers WanTransformer3DModel, the class real Wan uses, at tiny dims.
# Pixels are the "latents" (3 x 8 x 24 x 24); patch (1, 4, 4) -> 8 x 6 x 6 = 288 tokens,
# temporal patch 1 so that the first frame has its own tokens (Wan 2.2 TI2V conditioning).
SHAPES_TEACHER_CONFIG = dict(
    patch_size=(1, 4, 4),
    num_attention_heads=2,
    attention_head_dim=32,
    in_channels=3,
    out_channels=3,
    text_dim=TEXT_DIM,
    freq_dim=64,
    ffn_dim=256,
    num_layers=16,
    rope_max_seq_len=64,
)

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "assets" / "shapes_teacher"


def teacher_dir() -> Path:
    """The shipped teacher's folder: the `shapes-teacher` model preset (pyproject entry point)."""
    return SHIPPED_DIR
