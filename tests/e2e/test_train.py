"""train.py end to end: a short run, checkpoints, interruption and --resume, NaN handling, DDP."""
from __future__ import annotations

import csv
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train
from tests.train_probe import TrainProbe, fixed_batch_loss, moved
from utils.checkpoints.checkpoint import CheckpointError, load_model, read_checkpoint

ROOT = Path(__file__).resolve().parents[2]
COMMON = dict(cfg="yolov5n.yaml", imgsz=64, batch_size=4, workers=0, noautoanchor=False)


def _epochs_in_csv(run_dir: Path) -> list[int]:
    with open(run_dir / "results.csv") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_short_run_writes_everything_and_learns(tiny_coco, tmp_path, monkeypatch):
    probe = TrainProbe(monkeypatch)
    # nbs = batch: a step every batch. AdamW without warmup or augmentation, so that 6 steps
    # measurably fit the training images (SGD at lr0 0.01 barely moves the loss in 6 steps)
    res = train.run(data=str(tiny_coco), epochs=3, project=str(tmp_path), name="e2e", optimizer="AdamW",
                    hyp_set=["nbs=4", "lr0=0.005", "warmup_epochs=0", "mosaic=0", "scale=0", "translate=0",
                             "hsv_h=0", "hsv_s=0", "hsv_v=0", "fliplr=0"], **COMMON)
    run_dir = Path(res["save_dir"])
    assert not res["interrupted"]
    for f in ("weights/last.pt", "weights/best.pt", "results.csv", "hyp.yaml", "opt.yaml", "labels.png",
              "results.png"):
        assert (run_dir / f).is_file(), f
    assert _epochs_in_csv(run_dir) == [0, 1, 2]
    assert list(run_dir.glob("events.out.tfevents.*")), "no TensorBoard events"
    last = read_checkpoint(run_dir / "weights" / "last.pt")
    assert last["ema_updates"] == 6  # 3 epochs x 2 batches, one step each
    assert moved(probe.initial, last["raw_model"]) > 0.9 and moved(probe.initial, last["model"]) > 0.9
    # the trained weights fit a fixed, un-augmented batch better than the initial ones
    before = fixed_batch_loss(run_dir / "weights" / "last.pt", tiny_coco, probe.initial)
    after = fixed_batch_loss(run_dir / "weights" / "last.pt", tiny_coco)
    assert after < 0.95 * before, (before, after)  # 0.88 -> 0.82 when written
    best = read_checkpoint(run_dir / "weights" / "best.pt")
    assert best["epoch"] >= 0 and moved(probe.initial, best["model"]) > 0.9  # not the untrained model
    assert sum(probe.mosaics.values()) == 0  # mosaic=0 is obeyed
    m = res["metrics"]
    assert set(m) >= {"AP", "AP50", "APs", "fitness"} and all(math.isfinite(m[k]) for k in ("AP", "AP50"))
    model = load_model(run_dir / "weights" / "best.pt")
    assert model.names == ["square", "disc"] and model.cat_ids == [3, 7]


def test_checkpoint_round_trip(tmp_path):
    from models.yolo import Model
    from utils.checkpoints.checkpoint import checkpoint_yaml, save_checkpoint

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


def _train_cmd(data: Path, project: Path, epochs: int, *extra: str, name: str = "r") -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "--data", str(data), "--cfg", "yolov5n.yaml",
            "--imgsz", "64", "--batch-size", "4", "--workers", "0", "--epochs", str(epochs),
            "--project", str(project), "--name", name, "--noplots", *extra]


# nbs = batch size: an optimizer step on every batch, so 8 images make 2 steps an epoch
STEP_EVERY_BATCH = ("--hyp-set", "nbs=4")
# one thread: bit-identical arithmetic between runs, and a light load on a shared machine
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _wait_for_epochs(run_dir: Path, proc: subprocess.Popen, n: int, timeout: float = 300) -> None:
    """Until results.csv has n epoch rows (n epochs trained and saved, or about to be)."""
    end = time.monotonic() + timeout
    while not ((run_dir / "results.csv").exists() and len(_epochs_in_csv(run_dir)) >= n):
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.stdout.read()}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"{run_dir / 'results.csv'} never got {n} rows")
        time.sleep(0.05)


def _assert_same_training_state(a: Path, b: Path) -> None:
    """Two runs' last.pt and results.csv are bit-identical in everything training carries on."""
    ca, cb = (read_checkpoint(d / "weights" / "last.pt") for d in (a, b))
    for key in ("raw_model", "model"):  # weights, EMA weights (and BN statistics)
        assert ca[key].keys() == cb[key].keys()
        for k in ca[key]:
            assert torch.equal(ca[key][k], cb[key][k]), f"{key}.{k} differs"
    oa, ob = ca["optimizer"], cb["optimizer"]
    assert oa["param_groups"] == ob["param_groups"]  # lr and momentum: the schedule's position
    assert oa["state"].keys() == ob["state"].keys() and oa["state"]
    for i in oa["state"]:  # SGD momentum buffers
        assert torch.equal(oa["state"][i]["momentum_buffer"], ob["state"][i]["momentum_buffer"]), i
    for k in ("epoch", "ema_updates", "best_fitness", "best_epoch", "last_opt_step"):
        assert ca[k] == cb[k], k
    assert (a / "results.csv").read_text() == (b / "results.csv").read_text()


@pytest.fixture(scope="module")
def uninterrupted(tiny_coco, tmp_path_factory) -> Path:
    """The 4-epoch run that the interrupted-and-resumed runs must reproduce."""
    project = tmp_path_factory.mktemp("uninterrupted")
    res = subprocess.run(_train_cmd(tiny_coco, project, 4, *STEP_EVERY_BATCH), capture_output=True, text=True,
                         env=ENV, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ck = read_checkpoint(project / "r" / "weights" / "last.pt")
    # the runs below are only a test of resume if optimizer steps happen: 4 epochs x 2 batches
    assert ck["ema_updates"] == 8 and ck["last_opt_step"] == 7
    return project / "r"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_interrupted_run_resumes_to_the_same_state(tiny_coco, tmp_path, uninterrupted, sig):
    proc = subprocess.Popen(_train_cmd(tiny_coco, tmp_path, 4, *STEP_EVERY_BATCH), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT)
    run_dir = tmp_path / "r"
    last = run_dir / "weights" / "last.pt"
    _wait_for_epochs(run_dir, proc, 2)  # epoch 1 logged: epoch 0 is in last.pt
    proc.send_signal(sig)
    out = proc.communicate(timeout=300)[0]
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, out
        assert "continue with" in out
    else:
        assert proc.returncode == -signal.SIGKILL
    saved = read_checkpoint(last)["epoch"]
    assert 0 <= saved < 3
    # --workers is taken from the resuming command (it is the machine's); 0 keeps augmentation
    # in this process, where the checkpointed generator drives it
    res = subprocess.run([sys.executable, str(ROOT / "train.py"), "--resume", str(run_dir), "--workers", "0"],
                         capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Resuming from epoch {saved + 1} of 4" in res.stdout + res.stderr
    assert _epochs_in_csv(run_dir) == [0, 1, 2, 3]
    assert (run_dir / "weights" / "best.pt").exists()
    _assert_same_training_state(uninterrupted, run_dir)
    # resuming a finished run does nothing, and says so
    again = subprocess.run([sys.executable, str(ROOT / "train.py"), "--resume", str(last)],
                           capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert again.returncode == 0 and "already finished" in again.stdout + again.stderr


@pytest.mark.slow
def test_run_stopped_in_its_first_epoch_resumes_to_the_same_state(tiny_coco, tmp_path, uninterrupted):
    """last.pt is written before the first batch, so even epoch 0 can be resumed."""
    proc = subprocess.Popen(_train_cmd(tiny_coco, tmp_path, 4, *STEP_EVERY_BATCH), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT)
    last = tmp_path / "r" / "weights" / "last.pt"
    end = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.01)
    proc.kill()
    proc.communicate(timeout=60)
    if read_checkpoint(last)["epoch"] != -1:
        pytest.skip("the run finished an epoch before it could be killed (very slow start?)")
    res = subprocess.run([sys.executable, str(ROOT / "train.py"), "--resume", str(tmp_path / "r"), "--workers", "0"],
                         capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Resuming from epoch 0 of 4" in res.stdout + res.stderr
    _assert_same_training_state(uninterrupted, tmp_path / "r")


@pytest.mark.slow
def test_ddp_two_processes_gloo(tiny_coco, tmp_path):
    """Two CPU ranks: the model is wrapped in DDP, both ranks hold the same weights after their
    steps, their samples are disjoint, and each DDP step equals one single-process step on the
    union of the two ranks' batches (see tests/ddp_probe.py for the two stand-ins that make
    that exact)."""
    from models.yolo import Model
    from tests.ddp_probe import bn_running_stats, sum_over_images_loss
    from utils.engine.optim import apply_lr, build_optimizer, lr_lambda

    with socket.socket() as s:  # a free port, so parallel test runs do not collide
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "probe"
    out.mkdir()
    args = _train_cmd(tiny_coco, tmp_path, 1, "--device", "cpu", "--hyp-set", "nbs=4", "warmup_epochs=0")[2:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "tests.ddp_probe", str(out), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run_dir = tmp_path / "r"
    assert _epochs_in_csv(run_dir) == [0]  # rank 0 alone logs
    assert not (tmp_path / "r2").exists()  # and only rank 0 made a run dir
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["wrapped"] == r1["wrapped"] == "DistributedDataParallel"
    # the ranks share one start and one end: rank 1 never trained a model of its own
    for k in r0["initial"]:
        assert torch.equal(r0["initial"][k], r1["initial"][k]), k
        assert torch.equal(r0["final"][k], r1["final"][k]), k
    # DistributedSampler: disjoint halves that together cover the training set once
    assert len(r0["seen"]) == len(r1["seen"]) == 4
    assert not set(r0["seen"]) & set(r1["seen"]) and set(r0["seen"]) | set(r1["seen"]) == set(range(8))
    assert len(r0["batches"]) == len(r1["batches"]) == 2  # 2 images per rank per step, 2 steps

    # the same two steps in one process, on the union batches
    hyp = read_checkpoint(run_dir / "weights" / "last.pt")["hyp"]
    model = Model("yolov5n.yaml", nc=2)
    model.load_state_dict(r0["initial"])
    opt = build_optimizer(model, "SGD", hyp["lr0"], hyp["momentum"], hyp["weight_decay"])  # 4 / nbs 4 = 1
    lf = lr_lambda(1, hyp["lrf"])
    model.train()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.BatchNorm2d, "forward", bn_running_stats)
        for ni, (b0, b1) in enumerate(zip(r0["batches"], r1["batches"])):
            apply_lr(opt, hyp, lf, 0, ni, 0, 2, True)
            loss, _ = sum_over_images_loss(model(torch.cat((b0, b1)).float() / 255), torch.zeros(0, 6))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=hyp["grad_clip"])
            opt.step()
            opt.zero_grad()
    ref = model.state_dict()
    for name, _ in model.named_parameters():
        start, ddp = r0["initial"][name], r0["final"][name]
        # compare the updates, not the weights: early layers move by ~1e-6. The gradients are
        # summed in another order (all-reduce of two halves vs one batch), so allow float32
        # noise: relative 1e-3 of the update, plus rounding of weights of size ~0.1 (1e-8)
        assert torch.allclose(ddp - start, ref[name] - start, rtol=1e-3, atol=1e-8), name
        if name.endswith("weight") and ".bn." not in name:  # every conv weight did move
            assert (ref[name] - start).abs().max() > 1e-7, name



def test_noval_scores_only_the_last_epoch_and_hyp_set_overrides(tiny_coco, tmp_path, monkeypatch):
    probe = TrainProbe(monkeypatch)
    res = train.run(data=str(tiny_coco), epochs=2, project=str(tmp_path), name="nv", noval=True, noplots=True,
                    hyp_set=["fliplr=0.0", "nwd=0.25", "nbs=4"], **COMMON)
    run_dir = Path(res["save_dir"])
    with open(run_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["metrics/AP"] for r in rows][0] == "nan"  # epoch 0 not validated ...
    assert rows[1]["metrics/AP"] != "nan" and math.isfinite(float(rows[1]["metrics/AP"]))  # ... the last one is
    last, best = (read_checkpoint(run_dir / "weights" / f) for f in ("last.pt", "best.pt"))
    assert best["epoch"] == last["epoch"] == 1  # --noval: best.pt is the last epoch's
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])
    assert moved(probe.initial, last["raw_model"]) > 0.9
    assert last["hyp"]["fliplr"] == 0.0 and last["hyp"]["nwd"] == 0.25 and last["hyp"]["nbs"] == 4


def test_hyp_set_rejects_unknown_keys_and_bad_items():
    from utils.config import parse_hyp_set

    hyp = {"tile": 0.5, "nwd": 0.0}
    assert parse_hyp_set(["tile=1", "nwd=0.5"], hyp, "h.yaml") == {"tile": 1, "nwd": 0.5}
    with pytest.raises(ValueError, match="h.yaml has no hyperparameter 'tiles'"):
        parse_hyp_set(["tiles=1"], hyp, "h.yaml")
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_hyp_set(["tile"], hyp, "h.yaml")


def test_optimizer_comes_from_flag_then_hyp_file_then_sgd():
    from utils.config import load_hyp, resolve_optimizer

    dfl = load_hyp("configs/hyps/small-objects-dfl.yaml")
    assert resolve_optimizer(None, dfl, "h.yaml") == "AdamW" and dfl["lr0"] == 0.001
    # no key drifts apart; tal_stal is TAL's alone
    assert set(dfl) - {"optimizer", "tal_stal"} == set(load_hyp("configs/hyps/small-objects.yaml"))
    assert resolve_optimizer("SGD", dfl, "h.yaml") == "SGD"  # the flag wins
    assert resolve_optimizer(None, load_hyp("configs/hyps/default.yaml"), "h.yaml") == "SGD"
    with pytest.raises(ValueError, match=r"h\.yaml: optimizer 'Adagrad'"):
        resolve_optimizer(None, {"optimizer": "Adagrad"}, "h.yaml")


@pytest.mark.slow
def test_weights_fine_tuning_single_class(tiny_coco, tmp_path, monkeypatch):
    """--weights: training starts from the checkpoint's (EMA) weights wherever shapes fit; with
    --single-cls the 2-class head cannot fit and starts fresh, and the run is one class 'object'."""
    first = train.run(data=str(tiny_coco), epochs=1, project=str(tmp_path), name="src", noplots=True,
                      hyp_set=["nbs=4"], **COMMON)
    src = read_checkpoint(Path(first["save_dir"]) / "weights" / "last.pt")
    probe = TrainProbe(monkeypatch)
    res = train.run(data=str(tiny_coco), epochs=1, project=str(tmp_path), name="ft", noplots=True,
                    weights=str(Path(first["save_dir"]) / "weights" / "last.pt"), single_cls=True,
                    hyp_set=["nbs=4"], **{**COMMON, "noautoanchor": True})
    head = {k for k in src["model"] if k.startswith("model.24.m.")}  # the Detect convs: 3 x (weight, bias)
    assert len(head) == 6
    for k, v in src["model"].items():
        if k in head:
            assert probe.initial[k].shape != v.shape, k
        else:
            assert torch.equal(probe.initial[k], v), k
    out = read_checkpoint(Path(res["save_dir"]) / "weights" / "last.pt")
    assert out["names"] == ["object"] and out["model"]["model.24.m.0.bias"].shape[0] == 3 * 6  # na x (5 + 1)
    assert moved(probe.initial, out["raw_model"]) > 0.9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (AMP + GradScaler training step, "
                    "select_device('0')); this machine has none")
def test_cuda_amp_training_step(tiny_coco, tmp_path, monkeypatch):  # pragma: no cover - no GPU in CI
    from utils.torch_utils import select_device

    assert select_device("0") == torch.device("cuda:0")
    probe = TrainProbe(monkeypatch)
    res = train.run(data=str(tiny_coco), epochs=1, project=str(tmp_path), name="gpu", noplots=True, device="0",
                    hyp_set=["nbs=4"], **COMMON)
    last = read_checkpoint(Path(res["save_dir"]) / "weights" / "last.pt")
    assert last["scaler"] and last["ema_updates"] == 2  # AMP on: the GradScaler state is checkpointed
    assert moved({k: v.cpu() for k, v in probe.initial.items()}, last["raw_model"]) > 0.9
