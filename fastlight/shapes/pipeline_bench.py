"""ShapesBench for a Shapes pipeline folder: the world's oracle on the real-model evaluation path.

    oracle = pipeline_oracle(folder, num_frames=9, height=64, width=64, seed=0)   # None: not a Shapes pipeline
    res = evaluate_oracle_cases(folder, models, oracle, 320, "runs/x/evaluate", num_frames=9, height=64, width=64)
    res["oracle"]["models"]["student"]["score"], res["oracle"]["pairs"]["student"]["score"]

The plug-in side of `fastlight.evaluate.real`'s oracle hook (that module's doc; entry-point group
`fastlight.pipeline_oracles`, and the `fastlight_oracle` attribute of `ShapesPhraseEncoder`, which every Shapes
pipeline folder names as its text encoder). A folder is a Shapes pipeline when its model_index.json names
that text encoder. The world is the one its text encoder's config records (`world`: the phrase slots and
speed words it reads): a v2 folder is judged in the v2 world (`check_clip_v2`, WEIGHTS_V2) at the evaluation's
frame count (`world_from_name("v2", num_frames=9)`); a v1 folder in the 64 x 64 world its shards are made in
(`latent_data.folder_world`: the v1 rules at its VAE's size and radii). The video size must be the
world's (64 x 64): anything else is a one-line InputError.

Cases: ShapesBench's TEST cases of that world (`bench.make_cases(n, world, split="test")`; `split="validation"`: its
validation cases, for a choice reported on test) (the `shapes/test`
stream only, disjoint from every training and calibration stream), their prompts and first frames (written as
PNGs, 0.png, 1.png, ..., which the pipeline encodes with its own VAE as for any TI2V evaluation). Each row's
decoded videos (uint8, what the MP4s hold) are scored by `bench.score_videos` (the oracle, per-case data and
95% bootstrap intervals of the score and every part); `paired` gives the paired interval of A - B on the
same cases and noise (`bench.paired_intervals`). The noise is the evaluation's own (prompt i's `test`
stream), the same for every row, so rows pair.

Cost at the default 320 cases (the run's `eval_cases`), 9 frames, measured parts on this 2-core machine: the
latent transformer ~22 ms per call and the full decoder ~340 ms per video, so the teacher's 50 Euler steps
with CFG ~2.5 s per case (~13 min), a 4-step student ~0.45 s (~2.5 min), plus per row the proxies, motion and
oracle (~0.1 s per video): about 20 min for teacher + student + light-decoder rows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from fastlight.data import video as vio
from fastlight.errors import InputError, ModelError
from fastlight.fileio import atomic_path, read_json_object, to_json_safe
from fastlight.shapes import bench, text_model, world as shapes
from fastlight.shapes.latent_data import folder_world

NAME = "ShapesBench"
SUMMARY_KEYS = ("benchmark", "version", "world", "split", "case_seed", "seed", "num_cases", "score", "interval",
                "weights", "parts", "intervals", "metrics", "per_case")


def _shapes_index(folder: Path) -> dict | None:
    """The folder's model_index.json if it names the Shapes phrase encoder as the text encoder, else None."""
    index_file = Path(folder) / "model_index.json"
    if not index_file.is_file():
        return None
    index = read_json_object(index_file, ModelError, "rewrite the pipeline folder")
    return index if index.get("text_encoder") == [text_model.__name__, text_model.ShapesPhraseEncoder.__name__] else None


def is_shapes_pipeline(folder: Path) -> bool:
    """model_index.json names the Shapes phrase encoder as the text encoder."""
    return _shapes_index(folder) is not None


class ShapesPipelineOracle:
    """The Shapes world's oracle for a pipeline's videos (module doc)."""

    name = NAME

    def __init__(self, world: shapes.WorldConfig, seed: int = 0, case_seed: int = bench.SHAPESBENCH_SEED,
                 first_frames: bool = True, split: str = "test"):
        if split not in bench.SPLITS:  # ShapesBench's held-out streams
            raise InputError(f"split must be validation (what a choice is made on) or test (what it is reported on), "
                             f"got {split!r}")
        self.world, self.seed, self.case_seed, self.first_frames = world, seed, case_seed, first_frames
        self.split = split
        self._cases: list[bench.BenchCase] = []

    def cases(self, num_cases: int, folder: Path) -> tuple[list[str], list[Path] | None]:
        """The first `num_cases` cases of the split (TEST unless told): their prompts, and (a TI2V pipeline)
        their first frames written to folder/N.png."""
        self._cases = bench.make_cases(num_cases, self.world, self.case_seed, self.split)
        prompts = [c.prompt for c in self._cases]
        if not self.first_frames:
            return prompts, None
        files = []
        for c in self._cases:
            path = Path(folder) / f"{c.index}.png"
            with atomic_path(path) as tmp:
                Image.fromarray(vio.to_uint8_frames(c.image[:, None])[0]).save(tmp, format="PNG")
            files.append(path)
        return prompts, files

    def score(self, videos: Sequence[np.ndarray]) -> dict:
        """One row's decoded videos ((F, H, W, 3) uint8, in case order) judged by the oracle: the ShapesBench
        summary with 95% intervals and per-case data (no per-video detail)."""
        if len(videos) != len(self._cases):
            raise InputError(f"{len(videos)} videos for {len(self._cases)} ShapesBench cases: score the videos of "
                             "the cases this oracle gave (oracle.cases first)")
        x = torch.from_numpy(np.stack(videos)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1  # (N, 3, F, H, W)
        res = bench.score_videos(x, self._cases, self.world, vbench=False)
        doc = {"benchmark": "shapesbench", "version": bench.VERSION, "world": bench.world_json(self.world),
               "split": self.split, "case_seed": self.case_seed, "seed": self.seed, "num_cases": len(self._cases),
               **res, "interval": (res["intervals"] or {}).get("score")}
        return to_json_safe({k: doc[k] for k in SUMMARY_KEYS})

    def paired(self, a: dict, b: dict) -> dict:
        """A - B on the same cases and noise: the score's and every part's paired 95% interval."""
        d = bench.paired_intervals(a, b)
        return {"score": d["score"].to_json(),
                "parts": {k: None if v is None else v.to_json() for k, v in d["parts"].items()}}

    def describe(self) -> dict:
        """What eval.json records of the oracle: its name, world, cases and the ideal clips' upper bound."""
        ideal = bench.score_real(len(self._cases), self.world, vbench=False, case_seed=self.case_seed, split=self.split)
        return {"name": NAME, "oracle": "check_clip_v2" if self.world.name == "v2" else "check_clip",
                "world": bench.world_json(self.world), "world_name": self.world.name, "split": self.split, "case_seed": self.case_seed,
                "num_cases": len(self._cases),
                "ideal": {"score": ideal["score"], "interval": ideal["intervals"]["score"]}}


def pipeline_oracle(folder, *, num_frames: int, height: int, width: int, seed: int = 0, split: str = "test"
                    ) -> ShapesPipelineOracle | None:
    """The `fastlight.pipeline_oracles` factory: the oracle of a Shapes pipeline folder, None for any other."""
    folder = Path(folder)
    index = _shapes_index(folder)
    if index is None:
        return None
    world = folder_world(folder, num_frames)
    if (height, width) != (world.size, world.size):
        raise InputError(f"the Shapes oracle judges {world.size}x{world.size} videos (the world of {folder}); the "
                         f"evaluation asks for {height}x{width}: set the size to {world.size}x{world.size} (fastlight "
                         f"run: eval.height={world.size} eval.width={world.size}; fastlight evaluate: --height "
                         f"{world.size} --width {world.size})")
    return ShapesPipelineOracle(world, seed, first_frames=bool(index.get("expand_timesteps")), split=split)
