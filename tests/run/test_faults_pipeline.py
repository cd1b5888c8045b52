"""`fastlight run` faults: a second run on the same folder is refused (the run-folder lock); a moved
run folder continues its interrupted stage (stage 3 inits from stage 2's folder, hashed by content)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from fastlight.cli import main
from fastlight.train.checkpoint import list_checkpoints
from fastlight.train.lock import LOCK_NAME

TINY = ["calib=2", "eval_cases=2", "teacher_steps=2", "bench_repeats=1",
        "stage2.steps=2", "stage2.batch_size=2", "stage2.save_every=1", "stage2.warmup_steps=0",
        "stage3.steps=2", "stage3.batch_size=1", "stage3.critic_steps=1", "stage3.save_every=1"]
THROUGH_STAGE3 = ["--only", "1_analyze,2_plan,3_stage2,4_stage3"]

HOLD = ("import sys, time\nfrom fastlight.train.lock import RunLock\n"
        "RunLock(sys.argv[1]).acquire()\nprint('locked', flush=True)\ntime.sleep(120)\n")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, shapes_model_factory):
    return shapes_model_factory(tmp_path_factory.mktemp("faults") / "teacher", num_layers=4, perturb=0.05)


def _recipe(tmp_path):
    p = tmp_path / "recipe.yaml"
    p.write_text("method: fastlightgen\n")
    return p


def _weights(model_dir):
    return {f.name: load_file(str(f)) for f in sorted(model_dir.rglob("*.safetensors"))}


def test_second_run_on_a_run_folder_is_refused(teacher, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert main(["run", str(_recipe(tmp_path)), f"out={out}", f"teacher={teacher}", *TINY]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(f"fastlight run: error: {out} is in use by pid {holder.pid} (since 20")
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written by the refused run
    finally:
        holder.kill()
        holder.wait()


def test_moved_run_folder_continues_its_interrupted_stage(teacher, tmp_path, capsys):
    first = tmp_path / "a" / "run"
    args = ["run", str(_recipe(tmp_path)), f"teacher={teacher}", *TINY, *THROUGH_STAGE3]
    assert main([args[0], args[1], f"out={first}", *args[2:]]) == 0
    assert not (first / LOCK_NAME).exists() and not (first / "4_stage3" / LOCK_NAME).exists()
    done = _weights(first / "4_stage3" / "model")
    # interrupt stage 3 after its first step: no marker, no model, only the step-1 checkpoint
    (first / "4_stage3" / ".done.json").unlink()
    shutil.rmtree(first / "4_stage3" / "model")
    shutil.rmtree(list_checkpoints(first / "4_stage3")[-1])
    assert [c.name for c in list_checkpoints(first / "4_stage3")] == ["step-00000001"]
    moved = tmp_path / "b" / "moved"
    moved.parent.mkdir()
    shutil.move(str(first), str(moved))
    capsys.readouterr()
    assert main([args[0], args[1], f"out={moved}", *args[2:]]) == 0
    printed = capsys.readouterr().out
    assert f"resuming {moved / '4_stage3'} from step 1" in printed
    again = _weights(moved / "4_stage3" / "model")
    assert again.keys() == done.keys()
    for name in done:
        assert all(torch.equal(done[name][k], again[name][k]) for k in done[name]), name
