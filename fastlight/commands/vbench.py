"""`fastlight vbench FOLDER`: VBench-style dimensions (weight-free, exact/proxy labelled) on a folder of videos."""
from __future__ import annotations

from fastlight.commands.options import finite_float, output_file

import subprocess
import sys
from pathlib import Path

from fastlight.errors import InputError

# the synthetic-video checks of the VBench-style dimensions live with the tests (a source checkout)
VBENCH_CHECKS = Path(__file__).resolve().parents[2] / "tests" / "evaluate" / "test_vbench_known_answers.py"


def add_parser(sub) -> None:
    s = sub.add_parser("vbench", help="VBench-style dimensions (weight-free, exact/proxy labelled) on a folder of videos")
    s.add_argument("folder", nargs="?", help="folder of *.mp4 / *.gif videos")
    s.add_argument("--images", default=None,
                   help="folder of conditioning images (I2V dims), one per video with its name (a.png for a.mp4)")
    s.add_argument("--fps", type=finite_float, default=None,
                   help="every video's fps (default: the file's; where it gives none, 8 is used and the video named)")
    s.add_argument("--dims", default=None,
                   help="comma-separated subset of the dimensions (default: all; the i2v_* ones need --images)")
    s.add_argument("--backend", default="builtin", choices=["builtin", "vbench"],
                   help="builtin (weight-free) or vbench (the official package and its weights; not run here)")
    s.add_argument("--no-static-filter", action="store_true",
                   help="score temporal_flickering on every video (exact formula) instead of the static ones "
                        "picked by the OpenCV-flow static filter (proxy)")
    s.add_argument("--out", type=output_file, default=None, help="write the results JSON here")
    s.add_argument("--validate", action="store_true", help="print the synthetic-video validation table")
    s.set_defaults(fn=run)


def run(a) -> None:
    from fastlight.evaluate.vbench import VBenchUnavailable, evaluate_folder

    if a.validate:
        if not VBENCH_CHECKS.is_file():
            raise InputError(f"--validate runs the known-answer checks of a source checkout ({VBENCH_CHECKS} is "
                             "missing); clone the repository and run it there")
        rc = subprocess.run([sys.executable, str(VBENCH_CHECKS)]).returncode
        if rc:
            raise SystemExit(rc)
        return
    if not a.folder:
        raise InputError("give a folder of videos (or --validate)")
    try:
        res = evaluate_folder(a.folder, images=a.images, fps=a.fps, dims=a.dims, backend=a.backend, out_json=a.out,
                              static_filter=not a.no_static_filter)
    except VBenchUnavailable as e:  # a missing optional package is bad input here, not a bug
        raise InputError(str(e)) from None
    print_results(res)


def print_results(res: dict) -> None:
    """One line per dimension, then what was scored, skipped and assumed."""
    from fastlight.evaluate.vbench import DIMENSIONS

    if "status" in res:
        print(f"backend {res['backend']}: {res['status']}")
    for d in DIMENSIONS:
        if d in res:
            s = res[d]["score"]
            scored = res[d].get("num_scored")
            on = f" (on the {scored} of {res[d]['num_videos']} video(s) the static filter kept)" \
                if scored is not None and res[d].get("static_filter") else ""
            print(f"{d:24s} {res[d]['kind']:6s} {'n/a' if s is None else f'{s:.4f}'}{on}")
    for d in DIMENSIONS:
        if res.get(d, {}).get("missing"):
            print(f"{d}: {res['backend']} returned no per-video result for {', '.join(res[d]['missing'])}")
    print(f"scored {len(res['videos'])} video(s) of {len(res['videos']) + res['num_skipped']}")
    if res["num_skipped"]:
        print(f"skipped {res['num_skipped']}: {', '.join(res['skipped'])}")
        for name, why in res["unreadable"].items():
            print(f"  {name}: {why}")
    if res["fps_assumed"]:
        print(f"fps assumed {res['assumed_fps']:g} (the file gives none; only dynamic_degree uses it; set it with "
              f"--fps) for {len(res['fps_assumed'])}: {', '.join(res['fps_assumed'])}")
