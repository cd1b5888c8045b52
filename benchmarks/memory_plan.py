"""The README's memory table: per-GPU memory of Stage II and Stage III for the real models' geometries
(Wan 2.1 1.3B and 14B, Wan 2.2 TI2V 5B, HunyuanVideo 13B), FSDP2 over 8 GPUs, bf16, gradient
checkpointing, one sample per GPU, with and without CPU offload of parameters and optimizer state.

    python benchmarks/memory_plan.py [--num-gpus 8] [--gpu-memory-gb 80] [--shape 81,480,832]

Parameter counts are exact (the diffusers classes built on the meta device); activations are the
estimate of fastlight/run/memory.py. Nothing is downloaded and no GPU is needed.
"""
from __future__ import annotations

import argparse

from fastlight.run.memory import PlanOptions, geometry, memory_plan

NAMES = {"wan2.1-t2v-1.3b": "Wan 2.1 T2V 1.3B", "wan2.2-ti2v-5b": "Wan 2.2 TI2V 5B",
         "wan2.1-t2v-14b": "Wan 2.1 T2V 14B", "hunyuanvideo-t2v-13b": "HunyuanVideo 13B"}
ORDER = ("wan2.1-t2v-1.3b", "wan2.2-ti2v-5b", "wan2.1-t2v-14b", "hunyuanvideo-t2v-13b")
STAGE_NAMES = {"stage2": "II (dpp)", "stage3": "III (fastlightgen)"}


def table(num_gpus: int, gpu_memory_gb: float, shape: tuple[int, int, int]) -> str:
    """The Markdown table, one line per (model, stage, offload)."""
    f, h, w = shape
    lines = ["| model | params | tokens | stage | CPU offload | weights | grads | optimizer | activations* | total | host | fits |",
             "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for key in ORDER:
        for offload in (False, True):
            opts = PlanOptions(num_gpus=num_gpus, gpu_memory_gb=gpu_memory_gb, frames=f, height=h, width=w,
                               offload_params=offload, offload_optimizer=offload)
            plan = memory_plan(geometry(key), ["stage2", "stage3"], opts)
            for r in plan.rows:
                lines.append(f"| {NAMES[key]} | {plan.num_params / 1e9:.2f} B | {plan.tokens} | {STAGE_NAMES[r.stage]} | "
                             f"{'params + optimizer' if offload else 'none'} | {r.weights_gib:.1f} | {r.grads_gib:.1f} | "
                             f"{r.optimizer_gib:.1f} | {r.activations_gib:.1f} | **{r.total_gib:.1f}** | "
                             f"{r.host_gib:.1f} | {'yes' if r.fits else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-gpus", type=int, default=8)
    p.add_argument("--gpu-memory-gb", type=float, default=80.0)
    p.add_argument("--shape", default="81,480,832", help="FRAMES,HEIGHT,WIDTH")
    a = p.parse_args()
    shape = tuple(int(x) for x in a.shape.split(","))
    print(f"GiB per GPU; {a.num_gpus} x {a.gpu_memory_gb:g} GB, FSDP2, bf16, gradient checkpointing, "
          f"{shape[0]}x{shape[1]}x{shape[2]}, 1 sample per GPU, EMA on, Stage III student = 30% pruned\n")
    print(table(a.num_gpus, a.gpu_memory_gb, shape))


if __name__ == "__main__":
    main()
