"""Faults the training loop survives: a truncated or changed checkpoint (fall back to the newest that
verifies), a second run on the same folder (refused by the lock), a lock left by a killed run
(recovered), kill -9 + resume (metrics.jsonl without repeated steps), a moved run folder (resumes).
Also runnable as a script: the process that a test kills or races."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fastlight.errors import ConfigError, FastlightError
from fastlight.fileio import sha256_file
from fastlight.train.checkpoint import CheckpointError, _digest, _legacy_hashed_config, list_checkpoints
from fastlight.train.lock import LOCK_NAME, FolderInUseError, RunLock
from fastlight.train.loop import LoopConfig, train


class Recipe:
    """y = x @ w + noise, the batch a pure function of its index."""

    def trainable(self):
        self.model = torch.nn.Linear(3, 1)
        return self.model

    def batch(self, index, rank, world):
        g = torch.Generator().manual_seed(100 + index)
        x = torch.randn(4, 3, generator=g)
        return x, x @ torch.tensor([[1.0], [-1.0], [2.0]]) + 0.1 * torch.randn(4, 1, generator=g)

    def step(self, batch, step):
        x, y = batch
        return {"loss": (self.model(x) - y).pow(2).mean()}

    def save_output(self, path, module):
        path.mkdir(parents=True, exist_ok=True)
        torch.save(module.state_dict(), path / "final.pt")


@dataclass
class PathsConfig(LoopConfig):
    data: str = ""  # an input outside the run folder
    init: str = ""  # a file inside the run folder


def _cfg(out, **kw):
    base = dict(out=str(out), steps=10, lr=0.05, lr_schedule="constant", save_every=5, keep_last=2, log_every=1,
                ema_decay=0.9, cpu=True)
    return PathsConfig(**{**base, **kw})


def _weights(out):
    ck = list_checkpoints(Path(out))[-1]
    return load_file(str(ck / "model.safetensors")), load_file(str(ck / "ema.safetensors"))


def _assert_same(a, b):
    for x, y in zip(_weights(a), _weights(b)):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _steps(out):
    return [json.loads(ln)["step"] for ln in (Path(out) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    train(Recipe(), _cfg(out), progress=False)
    return out


def _stop_at(step):
    def hook(done, model):
        if done == step:
            raise KeyboardInterrupt  # Ctrl-C after step `step` (the step-5 checkpoint is written)
    return hook


# ---- checkpoint checksums and fallback -------------------------------------------------------------

def _truncate(f: Path):
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.pt"])
def test_truncated_newest_checkpoint_falls_back_to_the_one_before(tmp_path, reference, capsys, name):
    train(Recipe(), _cfg(tmp_path), progress=False)
    newest = list_checkpoints(tmp_path)[-1]
    assert newest.name == "step-00000010" and name in json.loads((newest / "state.json").read_text())["files"]
    _truncate(newest / name)
    capsys.readouterr()
    train(Recipe(), _cfg(tmp_path), progress=False)
    printed = capsys.readouterr().out.splitlines()
    skipped = [ln for ln in printed if ln.startswith("skipped checkpoint")]
    assert skipped == [f"skipped checkpoint {newest}: {name} does not match its checksum (truncated or changed); "
                       "trying an older one"]
    assert f"resuming {tmp_path} from step 5" in printed
    _assert_same(tmp_path, reference)  # steps 6..10 redone from step 5: the same weights and EMA
    assert _steps(tmp_path) == list(range(1, 11))


def test_checkpoint_without_checksums_is_verified_by_loading(tmp_path, reference, capsys):
    """A checkpoint from before checksums (no `files`, the old config hash) still resumes; a truncated
    .pt in one counts as not verifying."""
    train(Recipe(), _cfg(tmp_path), progress=False)
    for ck in list_checkpoints(tmp_path):
        state = json.loads((ck / "state.json").read_text())
        del state["files"], state["hash_format"]
        state["config"] = _legacy_hashed_config(_cfg(tmp_path))
        state["config_hash"] = _digest(state["config"])
        (ck / "state.json").write_text(json.dumps(state))
    _truncate(list_checkpoints(tmp_path)[-1] / "optimizer.pt")
    capsys.readouterr()
    train(Recipe(), _cfg(tmp_path), progress=False)
    out = capsys.readouterr().out
    assert "step-00000010: optimizer.pt cannot be read (RuntimeError" in out and "from step 5" in out
    _assert_same(tmp_path, reference)


def test_hostile_optimizer_file_counts_as_not_verifying(tmp_path, capsys):
    """A pickle that would run code, even with a matching checksum in state.json: weights_only refuses
    it, and the run falls back instead of showing a traceback."""
    train(Recipe(), _cfg(tmp_path), progress=False)
    newest = list_checkpoints(tmp_path)[-1]

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))
    torch.save({"state": Evil()}, newest / "optimizer.pt")
    state = json.loads((newest / "state.json").read_text())
    state["files"]["optimizer.pt"] = sha256_file(newest / "optimizer.pt")
    (newest / "state.json").write_text(json.dumps(state))
    capsys.readouterr()
    train(Recipe(), _cfg(tmp_path), progress=False)
    assert "optimizer.pt cannot be read (UnpicklingError" in capsys.readouterr().out
    assert not (tmp_path / "pwned").exists()


def test_no_checkpoint_verifies_is_refused_and_nothing_is_touched(tmp_path):
    train(Recipe(), _cfg(tmp_path), progress=False)
    for ck in list_checkpoints(tmp_path):
        (ck / "ema.safetensors").unlink()
    (list_checkpoints(tmp_path)[0] / "state.json").write_text("{not json")
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    metrics = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(CheckpointError) as e:
        train(Recipe(), _cfg(tmp_path), progress=False)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"no checkpoint in {tmp_path / 'checkpoints'} verifies (")
    assert "step-00000010: ema.safetensors is missing" in msg and "step-00000005: state.json is unreadable" in msg
    assert "move that folder aside to start afresh" in msg
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before
    assert (tmp_path / "metrics.jsonl").read_text() == metrics
    assert not (tmp_path / LOCK_NAME).exists()


# ---- the run-folder lock -------------------------------------------------------------------------

def _script(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, __file__, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(pred, p, what):
    deadline = time.time() + 60
    while not pred() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert pred(), f"the child never {what}: {p.stderr.read() if p.poll() is not None else ''}"


def _lock_pid(folder):
    try:
        return json.loads((Path(folder) / LOCK_NAME).read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def test_second_run_on_a_folder_is_refused(tmp_path):
    p = _script("train", str(tmp_path), "--hang-at", "2")
    try:
        _wait_for(lambda: _lock_pid(tmp_path) == p.pid and (tmp_path / "metrics.jsonl").exists(), p,
                  "took the lock and started")
        with pytest.raises(FolderInUseError) as e:
            train(Recipe(), _cfg(tmp_path), progress=False)
        msg = str(e.value)
        assert isinstance(e.value, FastlightError) and "\n" not in msg
        assert msg.startswith(f"{tmp_path} is in use by pid {p.pid} (since 20") and "wait for it" in msg
    finally:
        p.kill()
        p.wait()


def test_stale_lock_of_a_dead_process_is_recovered(tmp_path, capsys):
    p = _script("lock-and-die", str(tmp_path))
    p.wait()
    assert p.returncode == -signal.SIGKILL and _lock_pid(tmp_path) == p.pid
    train(Recipe(), _cfg(tmp_path, steps=2), progress=False)
    out = capsys.readouterr().out
    assert f"recovered a stale lock in {tmp_path}: pid {p.pid} (since 20" in out and "is gone" in out
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_released_on_error_and_on_ctrl_c(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(Recipe(), _cfg(tmp_path), progress=False, hooks=[_stop_at(7)])
    assert not (tmp_path / LOCK_NAME).exists()
    with pytest.raises(ConfigError):  # a refused resume (other lr) releases the lock as well
        train(Recipe(), _cfg(tmp_path, lr=0.01), progress=False)
    assert not (tmp_path / LOCK_NAME).exists()
    with RunLock(tmp_path):  # and the lock really excludes: a held one refuses the loop
        assert _lock_pid(tmp_path) == os.getpid()
        with pytest.raises(FolderInUseError, match=f"in use by pid {os.getpid()}"):
            train(Recipe(), _cfg(tmp_path), progress=False)
    assert not (tmp_path / LOCK_NAME).exists()


def test_refused_run_leaves_no_folder_behind(tmp_path):
    """A run refused before it wrote anything leaves no empty folder (the lock made it, the lock removes it)."""
    out = tmp_path / "new"

    class Broken(Recipe):
        def trainable(self):
            raise ConfigError("no such model")
    with pytest.raises(ConfigError, match="no such model"):
        train(Broken(), _cfg(out), progress=False)
    assert not out.exists()
    out.mkdir()  # a folder the user made stays, empty as it was
    with pytest.raises(ConfigError):
        train(Broken(), _cfg(out), progress=False)
    assert out.is_dir() and not list(out.iterdir())


# ---- kill -9 + resume: metrics.jsonl --------------------------------------------------------------

def test_metrics_have_each_step_once_after_kill_and_resume(tmp_path, reference, capsys):
    p = _script("train", str(tmp_path), "--hang-at", "8")  # hangs once step 7 is logged
    _wait_for(lambda: (tmp_path / "checkpoints" / "step-00000005" / "state.json").exists()
              and max(_steps(tmp_path), default=0) >= 7, p, "logged step 7")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    logged = _steps(tmp_path)
    assert max(logged) > 5 and max(c.name for c in list_checkpoints(tmp_path)) == "step-00000005"
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": ' + str(max(logged) + 1) + ', "lo')  # a line the kill cut short
    capsys.readouterr()
    train(Recipe(), _cfg(tmp_path), progress=False)
    printed = capsys.readouterr().out
    assert f"pid {p.pid}" in printed and "resuming" in printed  # the killed run's lock was recovered
    steps = _steps(tmp_path)
    assert steps == sorted(set(steps)) == list(range(1, 11))  # strictly increasing, each step once
    _assert_same(tmp_path, reference)


# ---- a moved run folder resumes --------------------------------------------------------------------

def test_moved_run_folder_resumes_and_matches(tmp_path, capsys):
    data = tmp_path / "inputs" / "data.json"
    data.parent.mkdir()
    data.write_text('{"rows": 3}')

    def cfg(out, **kw):
        (out).mkdir(parents=True, exist_ok=True)
        if not (out / "init.json").exists():
            (out / "init.json").write_text("{}")
        return _cfg(out.resolve(), data=str(data.resolve()), init=str((out / "init.json").resolve()), **kw)

    ref = tmp_path / "ref"
    train(Recipe(), cfg(ref), progress=False)
    first = tmp_path / "a" / "run"
    with pytest.raises(KeyboardInterrupt):
        train(Recipe(), cfg(first), progress=False, hooks=[_stop_at(7)])
    moved = tmp_path / "b" / "moved"
    moved.parent.mkdir()
    shutil.move(str(first), str(moved))
    copied = tmp_path / "copy"
    shutil.copytree(moved, copied)
    capsys.readouterr()
    train(Recipe(), cfg(moved), progress=False)
    assert f"resuming {moved.resolve()} from step 5" in capsys.readouterr().out
    _assert_same(moved, ref)
    assert _steps(moved) == list(range(1, 11))
    # the inputs' content is hashed, not their path: changing it refuses, naming the field
    data.write_text('{"rows": 4}')
    with pytest.raises(ConfigError, match=r"different config \(data: 'content sha256:\w+' -> 'content sha256:\w+'\)"):
        train(Recipe(), cfg(copied), progress=False)


def test_config_hash_is_location_free(tmp_path):
    from fastlight.train.checkpoint import hashed_config

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "w.bin").write_bytes(b"x" * 10)
    a = hashed_config(_cfg(tmp_path / "r1", data=str(tmp_path / "in"), init=str(tmp_path / "r1" / "p.json")))
    shutil.copytree(tmp_path / "in", tmp_path / "in2")
    b = hashed_config(_cfg(tmp_path / "r2", data=str(tmp_path / "in2"), init=str(tmp_path / "r2" / "p.json")))
    assert a == b and a["init"] == "<out>/p.json" and a["data"].startswith("content sha256:")
    assert hashed_config(_cfg(tmp_path, data="shapes-teacher"))["data"] == "shapes-teacher"  # a preset name
    assert hashed_config(_cfg(tmp_path / "r1", data=str(tmp_path)))["data"] == str(tmp_path)  # holds the run
    (tmp_path / "in2" / "w.bin").write_bytes(b"y" * 10)
    assert hashed_config(_cfg(tmp_path / "r2", data=str(tmp_path / "in2")))["data"] != a["data"]


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["train", "lock-and-die"])
    ap.add_argument("out")
    ap.add_argument("--hang-at", type=int, default=0, help="sleep (until killed) in the hook after this step")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.mode == "lock-and-die":
        RunLock(a.out).acquire()
        os.kill(os.getpid(), signal.SIGKILL)
    hang = [lambda done, model: time.sleep(600) if done == a.hang_at else None]
    train(Recipe(), _cfg(a.out), progress=False, hooks=hang)
