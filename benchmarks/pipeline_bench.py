"""The stock teacher pipeline against the exported student pipeline, end to end and denoise only.

    python benchmarks/pipeline_bench.py                      # tiny Wan 2.1 pipelines, built offline, CPU
    python benchmarks/pipeline_bench.py Wan2.1-T2V-1.3B-Diffusers:steps=50,guidance=5 runs/wan/export \\
        --num-frames 81 --height 480 --width 832 --device cuda --dtype bfloat16 --out bench.json

Without folders it builds, in a temporary folder, the tiny random-weight Wan 2.1 pipeline
(`fastlight.models.tiny_pipelines`, 4 blocks) as the teacher and a student from it: one block
dropped (`prune_depth`), the 4-step few-step sampler (1000/750/500/250, guidance 1), exported as a
stock WanPipeline folder (`export_diffusers`); then times the teacher at 50 steps with CFG 5 against
the student with its fastlight_export.json call, 17 frames at 32x32. Folders given: those, in order
(the first is the baseline; PIPE[:steps=N,guidance=G] as for `fastlight bench --pipeline`).

The method is `fastlight.evaluate.pipeline_bench` (warm-up, interleaved rounds, CUDA events, NFE
counted, text / denoise / decode phases, per-pipeline peak memory); this prints its table.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from fastlight.diffusion.spec import SamplerSpec
from fastlight.evaluate.pipeline_bench import PipelineEntry, bench_pipelines, parse_pipeline_spec, print_table
from fastlight.export.to_diffusers import export_diffusers
from fastlight.models.load import load_denoiser
from fastlight.models.tiny_pipelines import write_tiny_pipeline
from fastlight.prune.surgery import prune_depth

PROMPT = "a dog runs through a field of tall grass on a sunny afternoon"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pipelines", nargs="*", help="PIPE[:steps=N,guidance=G] (none: the tiny teacher and student)")
    ap.add_argument("--prompt", action="append", default=None, help="repeat; one video each per run")
    ap.add_argument("--num-frames", type=int, default=None, help="default 81 (17 for the tiny pipelines)")
    ap.add_argument("--height", type=int, default=None, help="default 480 (32 for the tiny pipelines)")
    ap.add_argument("--width", type=int, default=None, help="default 832 (32 for the tiny pipelines)")
    ap.add_argument("--teacher-steps", type=int, default=50, help="tiny teacher: steps (default 50)")
    ap.add_argument("--teacher-guidance", type=float, default=5.0, help="tiny teacher: CFG scale (default 5)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    return ap.parse_args(argv)


def tiny_teacher_and_student(root: Path) -> tuple[Path, Path]:
    """The tiny Wan 2.1 pipeline and its 4-step student with one block of four dropped, exported."""
    teacher = write_tiny_pipeline("wan21-t2v", root / "teacher")
    run = root / "run"
    prune_depth(load_denoiser(teacher), [2]).save(run / "model")
    SamplerSpec.few_step((1000, 750, 500, 250), guidance=1.0).save(run / "model")
    return teacher, export_diffusers(str(run), str(root / "student"), source=str(teacher))


def main(argv=None) -> list[dict]:
    a = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fastlight-pipeline-bench-") as tmp:
        if a.pipelines:
            entries, size = [parse_pipeline_spec(p) for p in a.pipelines], (81, 480, 832)
        else:
            teacher, student = tiny_teacher_and_student(Path(tmp))
            entries = [PipelineEntry(f"teacher ({a.teacher_steps} steps, CFG {a.teacher_guidance:g})", str(teacher),
                                     a.teacher_steps, a.teacher_guidance),
                       PipelineEntry("student (exported, 4 steps, 1/4 blocks pruned)", str(student))]
            size = (17, 32, 32)
        frames, height, width = (v if v is not None else d for v, d in zip((a.num_frames, a.height, a.width), size))
        rows = bench_pipelines(entries, a.prompt or [PROMPT], num_frames=frames, height=height, width=width,
                               repeats=a.repeats, warmup=a.warmup, device=a.device, out_json=a.out, dtype=a.dtype)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
