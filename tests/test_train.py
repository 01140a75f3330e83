"""train.py end to end: a short run, checkpoints, interruption and --resume, NaN handling, DDP."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train
from utils.checkpoint import CheckpointError, load_model, read_checkpoint
from utils.trainer import MAX_BAD_STEPS, Trainer, TrainingStopped

ROOT = Path(__file__).resolve().parent.parent
COMMON = dict(cfg="yolov5n.yaml", imgsz=64, batch_size=4, workers=0, noautoanchor=False)


def _epochs_in_csv(run_dir: Path) -> list[int]:
    with open(run_dir / "results.csv") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_short_run_writes_everything(tiny_coco, tmp_path):
    res = train.run(data=str(tiny_coco), epochs=2, project=str(tmp_path), name="e2e", **COMMON)
    run_dir = Path(res["save_dir"])
    assert not res["interrupted"]
    for f in ("weights/last.pt", "weights/best.pt", "results.csv", "hyp.yaml", "opt.yaml", "labels.png",
              "results.png"):
        assert (run_dir / f).is_file(), f
    assert _epochs_in_csv(run_dir) == [0, 1]
    assert list(run_dir.glob("events.out.tfevents.*")), "no TensorBoard events"
    m = res["metrics"]
    for k in ("AP", "AP50", "APs", "fitness"):
        assert 0.0 <= m[k] <= 1.0
    model = load_model(run_dir / "weights" / "best.pt")
    assert model.names == ["square", "disc"] and model.cat_ids == [3, 7]


def test_checkpoint_round_trip(tmp_path):
    from models.yolo import Model
    from utils.checkpoint import checkpoint_yaml, save_checkpoint

    model = Model("yolov5n-p2.yaml", nc=2)
    model.detect.anchors.mul_(1.5)  # as if autoanchor had changed them
    model.names, model.cat_ids = ["a", "b"], [4, 9]
    ck = {"model_yaml": checkpoint_yaml(model), "model": model.state_dict(), "names": model.names,
          "cat_ids": model.cat_ids}
    save_checkpoint(ck, tmp_path / "w.pt")
    assert not list(tmp_path.glob("*.tmp")), "temporary file left behind"
    back = load_model(tmp_path / "w.pt")
    x = torch.rand(1, 3, 64, 96)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), back(x))
    assert back.names == ["a", "b"] and back.cat_ids == [4, 9]
    assert torch.equal(back.detect.anchors, model.detect.anchors)
    # truncated file and missing file: clear errors naming the file
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt: not a readable checkpoint"):
        read_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="nope.pt: weights file not found"):
        read_checkpoint(tmp_path / "nope.pt")


class _NaNLoss:
    def __call__(self, preds, targets):
        x = sum(p.sum() for p in preds) * float("nan")
        return x, torch.full((3,), float("nan"))


def test_repeated_nan_loss_stops_with_clear_message(tmp_path):
    from models.yolo import Model

    model = Model("yolov5n.yaml", nc=1)
    batch = (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), torch.zeros(0, 6), (), ())
    loader = [batch] * (MAX_BAD_STEPS + 2)
    hyp = dict(lr0=0.01, lrf=0.01, momentum=0.9, weight_decay=5e-4, warmup_epochs=0)
    t = Trainer(model, _NaNLoss(), loader, lambda m, final=False: {"fitness": 0.0}, hyp,
                dict(epochs=1, batch_size=2, imgsz=64), tmp_path, torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TrainingStopped, match=f"NaN/inf {MAX_BAD_STEPS} times in a row"):
        t.fit()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "running" not in k and "num_batches" not in k)


def _train_cmd(data: Path, project: Path, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "--data", str(data), "--cfg", "yolov5n.yaml",
            "--imgsz", "64", "--batch-size", "4", "--workers", "0", "--epochs", str(epochs),
            "--project", str(project), "--name", "r", "--noplots", *extra]


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.stdout.read()}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_interrupted_run_resumes_to_the_asked_epochs(tiny_coco, tmp_path, sig):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_train_cmd(tiny_coco, tmp_path, 4), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    last = tmp_path / "r" / "weights" / "last.pt"
    _wait_for(last, proc)
    proc.send_signal(sig)
    out = proc.communicate(timeout=300)[0]
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, out
        assert "continue with" in out
    else:
        assert proc.returncode == -signal.SIGKILL
    saved = read_checkpoint(last)["epoch"]
    assert saved < 3
    res = subprocess.run([sys.executable, str(ROOT / "train.py"), "--resume", str(tmp_path / "r")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Resuming from epoch {saved + 1} of 4" in res.stdout + res.stderr
    assert read_checkpoint(last)["epoch"] == 3
    assert _epochs_in_csv(tmp_path / "r") == [0, 1, 2, 3]
    assert (tmp_path / "r" / "weights" / "best.pt").exists()
    # resuming a finished run does nothing, and says so
    again = subprocess.run([sys.executable, str(ROOT / "train.py"), "--resume", str(last)],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert again.returncode == 0 and "already finished" in again.stdout + again.stderr


@pytest.mark.slow
def test_ddp_two_processes_gloo(tiny_coco, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           *_train_cmd(tiny_coco, tmp_path, 2, "--device", "cpu")[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run_dir = tmp_path / "r"
    assert _epochs_in_csv(run_dir) == [0, 1]  # rank 0 alone logs: one row per epoch
    assert not (tmp_path / "r2").exists()  # and only rank 0 made a run dir
    assert read_checkpoint(run_dir / "weights" / "last.pt")["epoch"] == 1


def test_noval_scores_only_the_last_epoch_and_hyp_set_overrides(tiny_coco, tmp_path):
    res = train.run(data=str(tiny_coco), epochs=2, project=str(tmp_path), name="nv", noval=True, noplots=True,
                    hyp_set=["fliplr=0.0", "nwd=0.25"], **COMMON)
    run_dir = Path(res["save_dir"])
    with open(run_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["metrics/AP"] for r in rows][0] == "nan"  # epoch 0 not validated ...
    assert 0.0 <= float(rows[1]["metrics/AP"]) <= 1.0  # ... the last one is
    assert (run_dir / "weights" / "best.pt").is_file()
    hyp = read_checkpoint(run_dir / "weights" / "last.pt")["hyp"]
    assert hyp["fliplr"] == 0.0 and hyp["nwd"] == 0.25


def test_hyp_set_rejects_unknown_keys_and_bad_items():
    from utils.engine_setup import parse_hyp_set

    hyp = {"tile": 0.5, "nwd": 0.0}
    assert parse_hyp_set(["tile=1", "nwd=0.5"], hyp, "h.yaml") == {"tile": 1, "nwd": 0.5}
    with pytest.raises(ValueError, match="h.yaml has no hyperparameter 'tiles'"):
        parse_hyp_set(["tiles=1"], hyp, "h.yaml")
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_hyp_set(["tile"], hyp, "h.yaml")


def test_optimizer_comes_from_flag_then_hyp_file_then_sgd():
    from utils.engine_setup import load_hyp, resolve_optimizer

    dfl = load_hyp("configs/hyps/small-objects-dfl.yaml")
    assert resolve_optimizer(None, dfl, "h.yaml") == "AdamW" and dfl["lr0"] == 0.001
    assert set(dfl) - {"optimizer"} == set(load_hyp("configs/hyps/small-objects.yaml"))  # no key drifts apart
    assert resolve_optimizer("SGD", dfl, "h.yaml") == "SGD"  # the flag wins
    assert resolve_optimizer(None, load_hyp("configs/hyps/default.yaml"), "h.yaml") == "SGD"
    with pytest.raises(ValueError, match=r"h\.yaml: optimizer 'Adagrad'"):
        resolve_optimizer(None, {"optimizer": "Adagrad"}, "h.yaml")
