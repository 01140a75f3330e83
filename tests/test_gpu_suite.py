"""benchmarks/gpu_sampling.py: what the GPU suite reads off a run (nvidia-smi lines, batch stamps) and how the
result files of several device calls merge. No GPU, no training: canned inputs."""
import os
import sys

import pytest
import torch

from benchmarks.gpu_sampling import (merge_results, pair_summary, parse_smi_line, probe_img_per_s,
                                     steady_img_per_s, util_stats)

# `nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500` on two GPUs,
# with a line the driver prints when a reading is unavailable and a stray warning
SMI = """0, 35, 1200
1, 0, 3
0, 97, 20480
[N/A], [N/A], [N/A]
WARNING: infoROM is corrupted at gpu 0000:01:00.0
0, 99, 20500
1, 2, 3
0, 10, 20500
"""


def samples():
    parsed = [parse_smi_line(ln) for ln in SMI.splitlines()]
    assert parsed[3] is None and parsed[4] is None
    return [(float(t), *s) for t, s in enumerate(p for p in parsed if p is not None)]


def test_smi_lines_parse_and_unreadable_ones_drop_out():
    assert parse_smi_line("0, 97, 20480\n") == (0, 97.0, 20480.0)
    assert parse_smi_line("") is None
    assert [s[1] for s in samples()] == [0, 1, 0, 0, 1, 0]


def test_util_stats_one_gpu_and_a_time_window():
    s = samples()  # times 0..5: gpu0 at t 0, 2, 3, 5; gpu1 at 1, 4
    assert util_stats(s, 0) == {"mean": 60.2, "median": 66.0, "samples": 4, "mem_used_max_mib": 20500.0}
    assert util_stats(s, 1)["mean"] == 1.0
    win = util_stats(s, 0, t0=2.0, t1=3.0)  # the training epochs' window: the two busy samples only
    assert (win["mean"], win["samples"]) == (98.0, 2)
    assert util_stats(s, 2) is None and util_stats([], 0) is None


def epoch(start, first_gap, period, n):
    """n batch stamps: a slow first batch (loader start-up), then one every `period` s."""
    return [start] + [start + first_gap + k * period for k in range(n - 1)]


def test_steady_img_per_s_skips_first_epoch_and_first_batch_and_takes_the_median():
    epochs = [epoch(0, 9.0, 1.0, 10),  # the first epoch (warm-up, compile) does not count
              epoch(100, 5.0, 0.1, 10), epoch(200, 5.0, 0.1, 10), epoch(300, 5.0, 0.3, 10)]
    assert steady_img_per_s(epochs, 64) == pytest.approx(640.0)
    assert steady_img_per_s([epoch(0, 5.0, 0.5, 6)], 8) == pytest.approx(16.0)  # one epoch: that one
    assert steady_img_per_s([[0.0, 1.0]], 8) is None  # too few batches to time


def test_probe_counts_epoch_boundaries():
    # second epoch: 5 batches 0.1 s apart; the third starts 1 s later (loader restart) with 5 more
    epochs = [epoch(0, 9.0, 1.0, 4), [10 + 0.1 * k for k in range(5)], [11.4 + 0.1 * k for k in range(5)]]
    assert probe_img_per_s(epochs, 10) == pytest.approx(10 * 9 / 1.8)
    assert probe_img_per_s([[0.0, 5.0, 5.5, 6.0]], 4) == pytest.approx(8.0)  # one epoch: from its second stamp
    assert probe_img_per_s([], 4) is None


def run(name, side, finished, train_s, ap, epochs=20, rc=0):
    return {"name": name, "side": side, "finished": finished, "rc": rc, "train_s": train_s, "wall_s": train_s + 10,
            "steady_img_per_s": 1000 / train_s, "AP": ap, "budget": {"epochs": epochs}}


def test_merge_keeps_runs_of_both_calls_and_the_newer_of_one_key():
    first = {"card": "NVIDIA H100", "calls": [{"started": "T1"}],
             "runs": {"dfl@20": run("dfl", "ours", "2026-12-08T01:00:00Z", 200, 0.30),
                      "yolov5nu@20": run("yolov5nu", "peer", "2026-12-08T01:05:00Z", 250, 0.33)},
             "probes": {"ours": {"best": 8, "finished": "2026-12-08T00:59:00Z"}}}
    second = {"card": "NVIDIA H100", "calls": [{"started": "T2"}],
              "runs": {"dfl@20": run("dfl", "ours", "2026-12-08T02:00:00Z", 180, 0.31),
                       "yolo26n@20": run("yolo26n", "peer", "2026-12-08T02:04:00Z", 260, 0.27)},
              "probes": {}}
    m = merge_results(first, second)
    assert sorted(m["runs"]) == ["dfl@20", "yolo26n@20", "yolov5nu@20"]
    assert m["runs"]["dfl@20"]["train_s"] == 180  # the later call's rerun
    assert m["probes"]["ours"]["best"] == 8  # kept although the second call probed nothing
    assert [c["started"] for c in m["calls"]] == ["T1", "T2"]
    assert merge_results(m, second)["calls"] == m["calls"]  # merging the same call twice adds it once
    assert merge_results(second, first)["runs"]["dfl@20"]["train_s"] == 180  # newer wins whatever the order
    with pytest.raises(ValueError, match="two cards"):
        merge_results(first, {**second, "card": "NVIDIA H200"})


def test_pair_summary_compares_only_finished_runs_of_one_budget():
    runs = {"a": run("dfl", "ours", "t", 200, 0.30), "b": run("yolov5nu", "peer", "t", 250, 0.33),
            "c": run("yolo26n", "peer", "t", 100, 0.2, epochs=10),  # another budget
            "d": run("dfl-half-r4", "ours", "t", 150, 0.29, rc=1)}  # failed
    rows = pair_summary(runs)
    assert [(r["ours"], r["peer"]) for r in rows] == [("dfl", "yolov5nu")]
    assert rows[0]["train_s_ratio"] == 0.8 and rows[0]["AP_diff"] == -0.03
    assert rows[0]["img_per_s_ratio"] == 1.25


def test_budget_comes_from_the_environment(monkeypatch):
    from benchmarks.gpu_suite import parse
    monkeypatch.setenv("GPU_SUITE_EPOCHS", "7")
    monkeypatch.setenv("GPU_SUITE_RUNS", "dfl yolo26n")
    a = parse([])
    assert (a.epochs, a.runs, a.batch) == (7, ["dfl", "yolo26n"], 64)
    assert parse(["--epochs", "3"]).epochs == 3  # a flag outranks the environment


def test_peer_train_keywords_read_as_json_values():
    from benchmarks.gpu_timed_train import keyword
    assert keyword("cache=ram") == ("cache", "ram")
    assert keyword("close_mosaic=0") == ("close_mosaic", 0)
    assert keyword("amp=false") == ("amp", False)
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        keyword("cache")


FAKE_SMI = """#!/bin/sh
# a stand-in nvidia-smi: MODE loop prints a sample every interval with -lms; MODE once ignores -lms (prints nothing
# and exits, as a driver without the looping mode might) and answers one sample per plain call
case "$*" in
  *-lms*) [ "{mode}" = once ] && exit 0
          while true; do echo "0, 42, 1000"; echo "1, 7, 5"; sleep 0.05; done ;;
  *) echo "0, 42, 1000" ;;
esac
"""


@pytest.mark.parametrize("mode", ["loop", "once"])
def test_sampler_reads_nvidia_smi_in_the_background(tmp_path, monkeypatch, mode):
    import time

    from benchmarks.gpu_sampling import SmiSampler
    exe = tmp_path / "nvidia-smi"
    exe.write_text(FAKE_SMI.replace("{mode}", mode))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with SmiSampler(0.05) as smi:
        for _ in range(200):  # until a few samples came (a bound, not a timing check)
            if sum(s[1] == 0 for s in smi.samples) >= 3:
                break
            time.sleep(0.05)
    assert util_stats(smi.samples, 0)["median"] == 42.0
    assert ("polled" in (smi.note or "")) == (mode == "once")
    n = len(smi.samples)
    time.sleep(0.2)
    assert len(smi.samples) == n  # stopped with the block


def test_sampler_without_nvidia_smi_notes_it(tmp_path, monkeypatch):
    from benchmarks.gpu_sampling import SmiSampler
    monkeypatch.setenv("PATH", str(tmp_path))
    with SmiSampler() as smi:
        pass
    assert smi.samples == [] and "not found" in smi.note


def test_stamps_split_epochs_and_the_probe_stops_after_its_batches():
    from benchmarks.gpu_timed_train import ProbeDone, Stamps, timed
    st = Stamps(limit=5)

    def loop():  # two epochs of 3 batches; the probe's limit ends it in the second
        for _ in range(2):
            st.epoch()
            for _ in range(3):
                st.batch()

    out = timed(loop, st)
    assert out["probe_done"] and out["batches"] == 5
    assert [len(e) for e in out["epochs"]] == [3, 2]
    with pytest.raises(ProbeDone):
        Stamps(limit=1).batch()  # a batch before any epoch mark opens the first epoch
    assert timed(lambda: sys.exit(0), Stamps())["probe_done"] is False  # peer.py's sys.exit(main()) is a normal end
    with pytest.raises(SystemExit):
        timed(lambda: sys.exit(3), Stamps())


def test_polars_stand_in_fails_inside_the_packages_try(monkeypatch):

    from benchmarks.gpu_timed_train import polars_stand_in
    monkeypatch.setitem(sys.modules, "polars", None)  # as if not installed: `import polars` raises ImportError
    polars_stand_in()
    import polars
    assert polars.__stand_in__
    with pytest.raises(RuntimeError, match="not installed"):  # the package catches Exception around read_csv
        polars.read_csv(b"a,b\n1,2\n")


def test_gpu_hsv_check_runs_and_compares_pixels(tmp_path):
    """The device check's script (run first by gpu_suite.sh), here on the CPU: same pixels as OpenCV's."""
    from benchmarks.gpu_hsv_check import main
    r = main(["--device", "cpu", "--batch", "3", "--imgsz", "64", "--out", str(tmp_path / "h.json")])
    assert r["pixels"] == 3 * 64 * 64 and r["pixels_differing"] == 0 and r["max_abs_diff"] == 0
    assert (tmp_path / "h.json").exists()


def test_strip_weights_keeps_what_inference_loads(tmp_path):
    """benchmarks/strip_weights.py (gpu_sahi.sh's weights): the same model loads from the copy; the
    training state is gone; the input is never overwritten."""
    from benchmarks.strip_weights import strip
    from models.yolo import Model
    from utils.checkpoints.checkpoint import checkpoint_yaml, read_checkpoint, save_checkpoint
    from utils.inference.backends import load_model
    torch.manual_seed(0)
    m = Model("yolov5n.yaml", nc=2)
    src, dst = tmp_path / "w.pt", tmp_path / "s.pt"
    save_checkpoint({"model_yaml": checkpoint_yaml(m), "model": m.state_dict(), "raw_model": m.state_dict(),
                     "optimizer": {"state": {0: torch.zeros(1000)}}, "names": ["a", "b"], "epoch": 3}, src)
    sizes = strip(src, dst)
    assert sizes["out"] < sizes["in"]
    assert set(read_checkpoint(dst)) == {"model_yaml", "model", "names", "epoch"}
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(load_model(src).eval()(x)[0], load_model(dst).eval()(x)[0])
    with pytest.raises(SystemExit, match="is the input"):
        strip(src, src)
