"""One writer per run folder: train.py, val.py and detect.py hold a lock on the folder they write.

The lock is an flock on `<run folder>/.lock`, whose text names the holder (pid, host, start time,
command). The kernel drops an flock when its process dies, so a run killed with -9 leaves no lock
that blocks the next one; its file is then stale and is taken over with a note. Where the file system
has no flock (some network mounts) the text decides: a live pid on this host holds the folder, a dead
one is stale. Without --exist-ok a folder some other run holds is never used: the next free name is.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
import weakref
from pathlib import Path
from typing import IO, Any

from utils.logger import LOG
from utils.paths import increment_path

LOCK_NAME = ".lock"

try:
    import fcntl
except ImportError:  # Windows: the pid in the file decides
    fcntl = None  # type: ignore[assignment]


class RunFolderBusy(OSError):
    """Another live run writes this folder; the message names the folder and that run."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return True  # cannot tell: assume it lives rather than take its folder
    return True


def _holder(text: str) -> dict[str, Any]:
    try:
        info = json.loads(text)
        return info if isinstance(info, dict) else {}
    except ValueError:
        return {}


def _describe(info: dict[str, Any]) -> str:
    if not info:
        return "a run that is starting"
    cmd = str(info.get("command", ""))[:120]
    return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
            + (f" ({cmd})" if cmd else ""))


class RunLock:
    """Held from creation until release() (or the process ends). Raises RunFolderBusy when another
    live run holds the folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._f: IO[str] | None = None
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(20):  # the file can be replaced under us by a release between open and lock: retry
            f = open(self.path, "a+")
            try:
                if self._lock(f):
                    break
            except BaseException:
                f.close()
                raise
            f.close()
        else:
            raise RunFolderBusy(f"{self.folder}: could not lock {self.path} (it keeps changing)")
        self._f = f
        # released by release(), or when this object is collected or the interpreter exits (an exception that
        # ends the run): the next run then finds no stale file to take over
        self._release = weakref.finalize(self, _drop, self.path, f)
        f.seek(0)
        before = _holder(f.read())
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else ""}
        if before and before.get("pid") != me["pid"]:
            LOG.info(f"{self.folder}: stale lock of {_describe(before)} taken over (that run is no longer running)")
        f.seek(0)
        f.truncate()
        f.write(json.dumps(me))
        f.flush()
        self.info = me

    def _lock(self, f: IO[str]) -> bool:
        """True: f is locked and still the file at self.path. False: retry. Raises RunFolderBusy."""
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                raise RunFolderBusy(self._busy(_holder(f.read()))) from None
            except OSError:  # no flock on this file system: fall back to the pid in the file
                return self._pid_check(f)
            try:
                return os.fstat(f.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:  # released and removed between our open and our lock
                return False
        return self._pid_check(f)

    def _pid_check(self, f: IO[str]) -> bool:
        f.seek(0)
        info = _holder(f.read())
        here = info.get("host") == socket.gethostname()
        if info and info.get("pid") != os.getpid() and (not here or _alive(int(info.get("pid", 0)))):
            raise RunFolderBusy(self._busy(info))
        return True

    def _busy(self, info: dict[str, Any]) -> str:
        return (f"{self.folder} is in use by another run: {_describe(info)}. Two runs must not write one folder: "
                f"wait for it to end, or pick another --name (without --exist-ok a fresh folder is chosen)")

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._f is not None:
            self._release()
            self._f = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _drop(path: Path, f: IO[str]) -> None:
    try:
        if not f.closed and os.fstat(f.fileno()).st_ino == os.stat(path).st_ino:
            path.unlink()  # while still locked: nobody can be between open and lock on it
    except OSError:
        pass
    finally:
        f.close()  # closing drops the flock


def claim_run_dir(path: str | Path, exist_ok: bool) -> tuple[Path, RunLock]:
    """project/name -> (folder, its lock). exist_ok: exactly that folder, refused while another run holds
    it. Otherwise a folder no one else uses: the first free name that this process creates itself
    (mkdir without exist_ok, so two runs started together cannot both take it)."""
    path = Path(path)
    for _ in range(1000):
        folder = increment_path(path, exist_ok)
        if exist_ok:
            return folder, RunLock(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir()
        except FileExistsError:  # another run took this name between our look and our mkdir
            continue
        try:
            return folder, RunLock(folder)
        except RunFolderBusy:  # a run given this name with --exist-ok got there first
            continue
    raise RunFolderBusy(f"{path}: no free run folder name found")
