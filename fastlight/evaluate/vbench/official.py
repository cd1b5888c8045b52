"""Adapter to the official VBench package (``backend="vbench"``): lays the videos out in VBench's
custom-input naming (``<stem>.mp4``, GIFs re-encoded), runs its dimensions (temporal flickering on
the videos its RAFT static filter keeps, the I2V ones through VBench-I2V) and maps the results back
to this package's layout, every dimension labelled ``exact``. Without the package a one-line
`VBenchUnavailable` says how to install it.

Not run here: this project's tests exercise the adapter against a stand-in of the ``vbench`` module
(no package, no weights on the test machine), never the real package, so every result it returns
carries ``"status": NOT_RUN_HERE`` and `fastlight vbench --backend vbench` prints it. A video VBench
returns no per-video result for is named under the dimension's ``"missing"`` (its per_video is None)."""
from __future__ import annotations

import importlib
import json
import shutil
import tempfile
from pathlib import Path

import torch

from fastlight.data.video import read_video, write_video
from fastlight.evaluate.vbench.dimensions import DIMENSIONS
from fastlight.fileio import atomic_write_json

INSTALL_HINT = ("backend 'vbench' needs the official VBench package and its weights: pip install vbench "
                "(weights download to ~/.cache/vbench, see github.com/Vchitect/VBench#installation), "
                "or use backend='builtin'")
I2V_HINT = ("i2v dimensions need VBench-I2V (vbench2_beta_i2v, not in the pip package): clone "
            "github.com/Vchitect/VBench and add it to PYTHONPATH")


NOT_RUN_HERE = ("not run here: the official-VBench adapter is tested only against a stand-in of the vbench "
                "package; no test of this project has run the real package and its weights")


class VBenchUnavailable(ImportError):
    """The official `vbench` package (or a part of it) is not installed."""


def _import_vbench(need_i2v: bool):
    try:
        vbench = importlib.import_module("vbench")
    except ImportError:
        raise VBenchUnavailable(INSTALL_HINT) from None
    if need_i2v:
        try:
            importlib.import_module("vbench2_beta_i2v")
        except ImportError:
            raise VBenchUnavailable(I2V_HINT) from None
    return vbench


def layout_for_vbench(files: list[Path], fpss: list[float], dest: Path) -> list[Path]:
    """VBench custom-input naming: one `<stem>.mp4` per video (prompt = file stem). MP4s are
    symlinked (copied if links fail); GIFs are re-encoded to MP4 (VBench's flow dimensions
    read .mp4 only)."""
    dest.mkdir(parents=True, exist_ok=True)
    out, used = [], set()
    for p, f in zip(files, fpss):
        name = p.stem if p.stem not in used else f"{p.stem}_{p.suffix[1:].lower()}"  # a.mp4 + a.gif
        used.add(name)
        target = dest / f"{name}.mp4"
        if target.exists() or target.is_symlink():
            target.unlink()
        if p.suffix.lower() == ".mp4":
            try:
                target.symlink_to(p.resolve())
            except OSError:
                shutil.copy2(p, target)
        else:
            write_video(target, read_video(p), fps=max(1, int(round(f))))
        out.append(target)
    return out


class _Results:
    """VBench's per-dimension results, mapped back to the order of the laid-out videos."""

    def __init__(self, laid: list[Path]):
        self.n = len(laid)
        self.names = [p.name for p in laid]
        self.by_path: dict[str, int] = {}
        for i, p in enumerate(laid):
            self.by_path.update({str(p): i, str(p.resolve()): i, p.stem: i})
        self.out: dict[str, dict] = {}

    def collect(self, dim: str, result) -> None:
        """result = VBench's [score, [{"video_path", "video_results"}, ...]] of one dimension."""
        score, video_results = result[0], result[1] if len(result) > 1 else []
        per, found = [None] * self.n, set()
        for r in video_results or []:
            key = str(r.get("video_path", ""))
            i = self.by_path.get(key, self.by_path.get(Path(key).stem))
            if i is not None:
                found.add(i)
                v = r.get("video_results")
                per[i] = bool(v) if dim == "dynamic_degree" else (None if v is None else float(v))
        self.out[dim] = self.entry(None if score is None else float(score), per)
        if dim != "temporal_flickering":  # flickering is only asked for the static videos
            self.out[dim]["missing"] = [self.names[i] for i in range(self.n) if i not in found]

    def entry(self, score: float | None, per_video: list) -> dict:
        return {"score": score, "kind": "exact", "per_video": per_video, "num_videos": self.n, "backend": "vbench",
                "status": NOT_RUN_HERE}


def _run_vbench(vbench, device, videos_dir: Path, work: Path, name: str, dims: list[str]) -> dict:
    bench = vbench.VBench(device, str(Path(vbench.__file__).parent / "VBench_full_info.json"), str(work / "results"))
    bench.evaluate(videos_path=str(videos_dir), name=name, dimension_list=dims, local=True, mode="custom_input")
    return json.loads((work / "results" / f"{name}_eval_results.json").read_text())


def _flickering_on_static(vbench, device, laid: list[Path], work: Path, results: _Results) -> None:
    """VBench scores temporal flickering only on the videos its static filter (RAFT) keeps."""
    try:
        from easydict import EasyDict
        from vbench.cli.static_filter import StaticFilter
        from vbench.utils import CACHE_DIR
    except Exception as e:
        raise VBenchUnavailable(f"temporal_flickering needs VBench's static filter (RAFT weights): {e}") from None
    sf = StaticFilter(EasyDict(model=f"{CACHE_DIR}/raft_model/models/raft-things.pth", small=False,
                               mixed_precision=False, alternate_corr=False), device)
    static_dir = work / "static"
    static_dir.mkdir(exist_ok=True)
    for p in laid:
        if sf.infer(str(p)):
            (static_dir / p.name).symlink_to(p.resolve())
    if any(static_dir.iterdir()):
        res = _run_vbench(vbench, device, static_dir, work, "flicker", ["temporal_flickering"])
        results.collect("temporal_flickering", res["temporal_flickering"])
    else:
        results.out["temporal_flickering"] = results.entry(None, [None] * results.n)
    tf = results.out["temporal_flickering"]
    tf["num_scored"] = sum(v is not None for v in tf["per_video"])


def _i2v(device, laid: list[Path], image_files: list[Path], dims: list[str], work: Path, results: _Results) -> None:
    i2v_utils = importlib.import_module("vbench2_beta_i2v.utils")
    info = [{"prompt_en": p.stem, "dimension": dims, "video_list": [str(p)],
             "custom_image_path": str(Path(img).resolve())} for p, img in zip(laid, image_files)]
    info_path = atomic_write_json(work / "i2v_full_info.json", info)
    subs = i2v_utils.init_submodules(dims, local=True)
    for d in dims:
        mod = importlib.import_module(f"vbench2_beta_i2v.{d}")
        results.collect(d, getattr(mod, f"compute_{d}")(str(info_path), device, subs[d]))


def evaluate_with_vbench(files: list[Path], image_files: list[Path] | None, dims: list[str],
                         fpss: list[float], workdir=None, device=None) -> dict:
    """The official VBench scores of `files` on `dims`, in score_videos' layout (module doc)."""
    i2v_dims = [d for d in dims if DIMENSIONS[d]["needs_image"]]
    std_dims = [d for d in dims if not DIMENSIONS[d]["needs_image"]]
    vbench = _import_vbench(need_i2v=bool(i2v_dims))
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if workdir is None:  # the layout is only symlinks/re-encodes: drop it afterwards
        with tempfile.TemporaryDirectory(prefix="fastlight_vbench_") as tmp:
            return evaluate_with_vbench(files, image_files, dims, fpss, workdir=tmp, device=device)
    work = Path(workdir)
    laid = layout_for_vbench(files, fpss, work / "videos")
    results = _Results(laid)
    if "temporal_flickering" in std_dims:
        _flickering_on_static(vbench, device, laid, work, results)
    run_dims = [d for d in std_dims if d != "temporal_flickering"]
    if run_dims:
        res = _run_vbench(vbench, device, work / "videos", work, "fastlight", run_dims)
        for d in run_dims:
            results.collect(d, res[d])
    if i2v_dims:
        _i2v(device, laid, image_files, i2v_dims, work, results)
    return {d: results.out[d] for d in dims if d in results.out}
