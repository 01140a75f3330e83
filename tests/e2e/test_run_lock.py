"""One writer per run folder (issue 37.1): a second train.py / val.py / detect.py in a folder a live run writes
is refused with the folder and the run named, or (without --exist-ok) gets a fresh folder; a dead run's lock
is taken over; a checkpoint write never removes another writer's temp file. Each test failed before its fix."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import make_coco
from tests.e2e.test_bad_input import _untrained_weights
from utils.run_lock import LOCK_NAME, RunFolderBusy, RunLock, claim_run_dir

ROOT = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time\nfrom utils.run_lock import RunLock\nlock = RunLock(sys.argv[1])\n"
        "print('locked', flush=True)\ntime.sleep(120)\n")


@pytest.fixture
def live_run(tmp_path):
    """A folder held by another live process (as a running train.py holds its run folder)."""
    folder = tmp_path / "runs" / "same"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield folder, proc
    proc.kill()
    proc.wait()


def test_a_live_runs_folder_is_refused_with_it_named_and_a_fresh_one_is_picked(live_run):
    folder, proc = live_run
    with pytest.raises(RunFolderBusy, match=rf"{folder}.* in use by another run: pid {proc.pid} on "):
        claim_run_dir(folder, exist_ok=True)
    fresh, lock = claim_run_dir(folder, exist_ok=False)  # not asked to reuse it: the next free name
    assert fresh == folder.parent / "same2" and (fresh / LOCK_NAME).is_file()
    with pytest.raises(RunFolderBusy):  # even within one process, a held folder is held
        RunLock(fresh)
    lock.release()
    assert not (fresh / LOCK_NAME).exists()
    with RunLock(fresh):  # free again
        pass


def test_a_dead_runs_lock_is_taken_over_with_a_note(live_run, caplog):
    folder, proc = live_run
    proc.kill()  # kill -9: its lock file stays, naming a pid that is gone
    proc.wait()
    assert str(proc.pid) in (folder / LOCK_NAME).read_text()
    log = logging.getLogger("smalldet")
    log.addHandler(caplog.handler)
    try:
        with RunLock(folder) as lock:
            assert lock.info["pid"] == os.getpid()
    finally:
        log.removeHandler(caplog.handler)
    assert any(f"stale lock of pid {proc.pid}" in r.message for r in caplog.records)


def test_without_flock_the_pid_in_the_lock_file_decides(tmp_path, monkeypatch):
    """File systems without flock (some network mounts): a live pid on this host holds the folder, a dead one
    does not."""
    import json
    import socket

    from utils import run_lock
    monkeypatch.setattr(run_lock, "fcntl", None)
    folder = tmp_path / "run"
    folder.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        info = {"pid": child.pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00", "command": "x"}
        (folder / LOCK_NAME).write_text(json.dumps(info))
        with pytest.raises(RunFolderBusy, match=f"pid {child.pid}"):
            RunLock(folder)
    finally:
        child.kill()
        child.wait()
    with RunLock(folder) as lock:  # its pid is gone now
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid() == lock.info["pid"]


def test_a_run_that_ends_on_an_error_leaves_no_lock(tmp_path):
    """Ctrl-C in the final evaluation ended val's run with a KeyboardInterrupt: its lock file stayed, and the
    resumed run reported a stale lock."""
    folder = tmp_path / "run"
    crash = HOLD.replace("time.sleep(120)", "raise KeyboardInterrupt")
    r = subprocess.run([sys.executable, "-c", crash, str(folder)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "locked" in r.stdout
    assert not (folder / LOCK_NAME).exists()
    lock = RunLock(folder)
    del lock  # dropped without release(), as a frame that an exception unwinds
    assert not (folder / LOCK_NAME).exists()


def test_train_val_detect_refuse_a_folder_a_live_run_writes_and_keep_its_files(live_run, tmp_path):
    import train
    import val
    from utils.inference.runner import run_detection
    folder, proc = live_run
    (folder / "results.csv").write_text("epoch,x\n0,1\n")  # the live run's rows (a new run used to delete them)
    data = make_coco(tmp_path / "set", n_train=2, n_val=1, size=64)
    w = _untrained_weights(tmp_path / "w.pt")
    with pytest.raises(RunFolderBusy, match=f"pid {proc.pid}"):
        train.run(data=str(data), cfg="yolov5n.yaml", imgsz=64, batch_size=2, workers=0, epochs=1, noplots=True,
                  project=str(folder.parent), name="same", exist_ok=True)
    with pytest.raises(RunFolderBusy, match=f"pid {proc.pid}"):
        val.run(data=str(data), weights=str(w), imgsz=64, workers=0, device="cpu", plots=False,
                project=str(folder.parent), name="same", exist_ok=True, verbose=False)
    with pytest.raises(RunFolderBusy, match=f"pid {proc.pid}"):
        run_detection(weights=str(w), source=str(data.parent / "images" / "val"), imgsz=64, device="cpu",
                      project=str(folder.parent), name="same", exist_ok=True, verbose=False)
    assert (folder / "results.csv").read_text() == "epoch,x\n0,1\n"
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME, "results.csv"]  # nothing written into it
    res = val.run(data=str(data), weights=str(w), imgsz=64, workers=0, device="cpu", plots=False,
                  project=str(folder.parent), name="same", verbose=False)  # without --exist-ok: a fresh folder
    assert Path(res["save_dir"]) == folder.parent / "same2" and not (folder.parent / "same2" / LOCK_NAME).exists()


def test_a_checkpoint_write_keeps_another_writers_temp_file(tmp_path):
    """Two processes saving last.pt into one folder: the clean-up of stale temp files removed the other's
    file mid-write, and its rename failed ([Errno 2] ... last.pt.XXXX.tmp -> last.pt)."""
    from utils.checkpoints.checkpoint import STALE_TMP_S, save_checkpoint
    other = tmp_path / "last.pt.a1b2c3d4.tmp"  # another writer's file, being written right now
    other.write_bytes(b"half written")
    save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    assert other.read_bytes() == b"half written"
    old = time.time() - STALE_TMP_S - 60  # untouched for over an hour: no writer is alive
    os.utime(other, (old, old))
    save_checkpoint({"epoch": 2}, tmp_path / "last.pt")
    assert not other.exists() and torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 2


def test_two_exports_of_one_checkpoint_never_share_a_temp_file(tmp_path, monkeypatch):
    """export.py wrote every export of w.pt through the one temp file .w.torchscript.tmp.torchscript and removed
    it when done: a second export at the same time overwrote the first one's file and removed it under it."""
    import export
    w = _untrained_weights(tmp_path / "w.pt")
    real, written = export._write_torchscript, []

    def recording(model, x, path, meta):
        written.append(path)
        real(model, x, path, meta)

    monkeypatch.setattr(export, "_write_torchscript", recording)
    export.run(w, include=("torchscript",), imgsz=64)
    assert len(written) == 1 and str(os.getpid()) in written[0].name  # this process's own name
    assert (tmp_path / "w.torchscript").is_file() and not written[0].exists()
