"""Ship a trained latent Shapes teacher as fastlight/assets/shapes_latent_teacher (the `shapes-pipeline` preset).

    .venv/bin/python benchmarks/ship_latent_teacher.py runs/x/pretrain/model --shards runs/x/shards \
        --validation runs/x/oracle_val.json --test runs/x/oracle_test.json --guidance 4 --machine "..."

Copies the `fastlight pretrain` output folder (config.json, the weights, fastlight.json with the run's config
and loss curve) and writes manifest.json: what it is, the world, the recipe and commands, the training
steps and wall time, the data (the shards' index: clips, stream, world), the parameter count and size on
disk, and the oracle figures of `benchmarks/latent_teacher_oracle.py` on validation cases (where the guidance
was chosen) and on test cases (what is reported), with `bar_ok`. Refuses a folder over 30 MB (issue 17) or
one whose world is not the shards' world. The asset is written atomically.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safetensors import safe_open  # noqa: E402

from fastlight.fileio import atomic_dir  # noqa: E402

MAX_BYTES = 30 * 2**20
OUT = Path(__file__).resolve().parents[1] / "fastlight" / "assets" / "shapes_latent_teacher"
RECIPE = "configs/shapes/latent_pretrain.yaml"


def _oracle_record(path: Path, guidance: float) -> dict:
    doc = json.loads(path.read_text())
    row = doc["rows"][f"cfg{guidance:g}"]
    return {"split": doc["split"], "cases": doc["cases"], "num_steps": doc["num_steps"], "guidance": guidance,
            "seed": doc["seed"], "teacher": row, "other_rows": {k: v for k, v in doc["rows"].items()
                                                               if k != f"cfg{guidance:g}"},
            "vae_round_trip": doc["vae_round_trip"], "ideal_score": doc["ideal"]["score"],
            "command": doc.get("command")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="the fastlight pretrain output folder (OUT/model)")
    ap.add_argument("--shards", required=True, help="the shards it was trained on (their index.json is recorded)")
    ap.add_argument("--validation", required=True, help="latent_teacher_oracle.py JSON on validation cases")
    ap.add_argument("--test", required=True, help="latent_teacher_oracle.py JSON on test cases")
    ap.add_argument("--guidance", type=float, required=True, help="the CFG scale chosen on validation")
    ap.add_argument("--machine", required=True, help="where and how it trained (alone or not, threads)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    model, shards = Path(args.model), Path(args.shards)
    meta = json.loads((model / "fastlight.json").read_text())
    index = json.loads((shards / "index.json").read_text())
    world = index["shapes"]["world"]
    model_world = (meta.get("meta") or {}).get("world", {}).get("world")  # None: the model records no world
    if model_world not in (None, world["world"]):
        ap.error(f"the model's meta world {model_world} is not the shards' {world['world']}")
    files = [f for f in model.iterdir() if f.is_file()]
    size = sum(f.stat().st_size for f in files)
    if size > MAX_BYTES:
        ap.error(f"{model} is {size / 2**20:.1f} MB; the shipped teacher must be <= 30 MB")
    config = json.loads((model / "config.json").read_text())
    with safe_open(str(model / "diffusion_pytorch_model.safetensors"), "pt") as f:
        num_params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    manifest = {
        "what": "the embedded Shapes teacher: a latent WanTransformer3DModel of the Shapes pipeline folder "
                "(fastlight/shapes/pipeline_folder.py), the `shapes-pipeline` preset",
        "class": "diffusers.WanTransformer3DModel", "config": config,
        "world": world, "recipe": RECIPE,
        "command": (f"python -m fastlight.shapes.latent_data {shards} --pipeline PIPE --world {world['world']} "
                    f"--num-clips {index['num_samples']} --threads 2 && fastlight pretrain {RECIPE} (paths as run: "
                    f"{meta.get('train_config', {}).get('out')})"),
        "train": {"steps": meta.get("steps"), "wall_time_s": meta.get("wall_time_s"),
                  "batch_size": meta.get("train_config", {}).get("batch_size"), "machine": args.machine,
                  "date": time.strftime("%Y-%m-%d")},
        "data": {"clips": index["num_samples"], "split": index["shapes"]["split"], "stream": index["shapes"]["stream"],
                 "seed": index["shapes"]["seed"], "text_length": index["text"]["length"],
                 "vae_fingerprint": index["vae_fingerprint"]},
        "parameters": num_params, "bytes_on_disk": size,
        "sampler": {"num_steps": 50, "guidance": args.guidance, "solver": "euler",
                    "why": "the guidance chosen on validation cases (oracle_validation)"},
        "oracle_validation": _oracle_record(Path(args.validation), args.guidance),
        "oracle_test": _oracle_record(Path(args.test), args.guidance),
    }
    with atomic_dir(args.out) as tmp:
        for f in files:
            shutil.copy2(f, tmp / f.name)
            (tmp / f.name).chmod(0o644)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {args.out} ({size / 2**20:.1f} MB); test bar {'MET' if manifest['oracle_test']['teacher']['bar_ok'] else 'not met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
