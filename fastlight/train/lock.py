"""One process per run folder: `OUT/.lock`, held while a training run or a `fastlight run` pipeline works there.

    with RunLock(out, "training folder (--out)"):   # raises FolderInUseError (exit 2, one line) if held
        ...

The lock is an exclusive `fcntl.flock` on `OUT/.lock`, which also holds {pid, host, since} for the
messages. flock rather than an O_CREAT|O_EXCL file: the kernel drops a flock when its holder dies,
however it dies (kill -9, the OOM killer), so a lock left by a dead process is never mistaken for a
live one and recovering it needs no pid test and no racy "read, decide, unlink" (two recoverers of
an O_EXCL file can both unlink and both win). A `.lock` file found with content but free to lock is
what a dead process left behind: it is taken over with one line saying so. On release the file is
unlinked while still locked; a taker re-checks after locking that the path still names the file it
locked (else it retries), so the unlink never lets two holders in. Where the file system refuses
locks (some FUSE and NFS mounts without a lock daemon) the run goes on unlocked, with a warning.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from fastlight.errors import PathError, make_dir

LOCK_NAME = ".lock"


class FolderInUseError(PathError):
    """The run folder is locked by another live process."""


def _describe(info: dict) -> str:
    since = info.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since)) if isinstance(since, (int, float)) else "?"
    host = info.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"pid {info.get('pid', '?')}{where} (since {when})"


def _read_info(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        info = json.loads(raw.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"pid": "?"} if raw else {}
    return info if isinstance(info, dict) else {"pid": "?"}


class RunLock:
    """An exclusive lock on `folder` (created if missing) for the life of a `with` block, or
    acquire() .. release(). `what` names the folder in messages (e.g. "training folder (--out)")."""

    def __init__(self, folder: str | os.PathLike, what: str = "run folder"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_NAME
        self.fd: int | None = None
        self.created = False

    def acquire(self) -> "RunLock":
        self.created = not self.folder.exists()
        make_dir(self.folder, self.what)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                info = _read_info(fd) if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
                os.close(fd)
                if info is None:  # the file system has no locks: better unlocked than not at all
                    print(f"warning: cannot lock {self.path} ({e.strerror}); not protected against a second run")
                    return self
                raise FolderInUseError(
                    f"{self.folder} is in use by {_describe(info)}; wait for it to finish or stop it, "
                    f"or use another output folder") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder we waited on unlinked this file on release: lock the new one
        old = _read_info(fd)
        if old:
            print(f"recovered a stale lock in {self.folder}: {_describe(old)} is gone")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode())
        self.fd = fd
        return self

    def release(self) -> None:
        """Unlink the lock file (while still holding it), unlock; remove the folder if this lock made
        it and nothing else was written there (a refused run leaves nothing behind)."""
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)
            self.fd = None
        if self.created:
            try:
                self.folder.rmdir()
            except OSError:  # not empty: the run wrote its outputs
                pass

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
