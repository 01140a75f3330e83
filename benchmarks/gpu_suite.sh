#!/usr/bin/env bash
# GPU whole runs on deeppcb, ours against the Ultralytics package, one after another on one GPU (issue 40).
#
#   bash benchmarks/gpu_suite.sh prepare     # here, on the CPU machine, before the device call
#   bash benchmarks/gpu_suite.sh [run] [gpu_suite.py flags]   # on the device (or here with GPU_SUITE_DEVICE=cpu)
#
# Runs (GPU_SUITE_RUNS, any subset, in this order): dfl (yolov5n-dfl.yaml), dfl-half-r4 (yolov5n-dfl-half.yaml
# --reg-max 4), both with the deeppcb recipe of the ablation (small-objects-dfl hyps, TAL with STAL, tile 0);
# yolov5nu and yolo26n (../shared/bench/peer.py --device 0, trained from scratch). Per run the result file gets
# wall time, the training call's time, steady-state img/s, GPU utilisation (nvidia-smi every 0.5 s: mean and
# median), peak GPU memory and AP / AP50 / APs by pycocotools, plus the card, torch / ultralytics versions,
# commands and seeds: benchmarks/results/gpu-suite-<card>.json. Runs are keyed name@budget and files merge, so
# several calls fill one file: bring $OUT's file back into benchmarks/results/ before the next call.
#
# Budget (environment, or the same flags after `run`; python -m benchmarks.gpu_suite -h lists them):
#   GPU_SUITE_RUNS="dfl yolov5nu dfl-half-r4 yolo26n"  GPU_SUITE_EPOCHS=20  GPU_SUITE_IMGSZ=640  GPU_SUITE_BATCH=64
#   GPU_SUITE_SEED=0  GPU_SUITE_DEVICE=0  GPU_SUITE_WORKERS=auto (the side's probed best, else 8; or a count)
#   GPU_SUITE_PROBE="4 8 12" (probe these worker counts per side first: GPU_SUITE_PROBE_BATCHES=40 batches each,
#   ~15 s a count: 3 counts x 2 sides ~ 90 s)  GPU_SUITE_DEADLINE_S=450 (start no run expected to end later:
#   its earlier wall at this budget, else the longest run of this call)  GPU_SUITE_DDP=auto|off|force (the
#   2-process CUDA DDP smoke run, 1 epoch at 320: run with 2+ GPUs, else skipped with a note)
#   GPU_SUITE_MAX_IMAGES=N (first N images a split: the CPU check)  GPU_SUITE_THREADS (peer.py --threads, CPU)
#   GPU_SUITE_HSV_CHECK=off (skip benchmarks/gpu_hsv_check.py, which runs first: ~10 s, $OUT/gpu-hsv-check.json)
#   GPU_SUITE_TAG=name with GPU_SUITE_OURS_ARGS="--cache ram" / GPU_SUITE_PEER_KW="cache=ram" (a recipe variant,
#   keyed apart)  GPU_SUITE_OUT (the result file)  GPU_SUITE_WORKDIR=/tmp/gpu-suite (a folder per call)
#
# Time: the one earlier H200 figure, 430 s for our yolov5n-dfl alone at 20 epochs (at 320, batch 16, workers 0,
# beside 6 other jobs: benchmarks/results/gpu-h200-deeppcb-20ep.json), says one run per call; the same recipe
# with 5 workers took 117 s. At 640 / batch 64 with 8 workers a run should take ~2-4 min: an epoch is 16 steps
# of ~54 ms (1,188 img/s, the same file); on deeppcb (grey) our loader makes ~430-710 img/s per CPU second and
# the peer's ~180-240 (loader-speed-per-core.json), so 8 workers keep up on either side; plus ~3 s of validation an epoch and start-up. The four runs do
# not fit one 8-minute call at the pessimistic figure, and may not at the hopeful one. Recommended split (device time per session is 15 min, starts included):
#   call 1 (timeout_s 540): GPU_SUITE_RUNS="dfl yolov5nu"   the equal-size pair, the issue's 0.8x goal
#   call 2 (timeout_s 540): GPU_SUITE_RUNS="dfl-half-r4 yolo26n"   if call 1's walls leave the time, same budget;
#          otherwise GPU_SUITE_EPOCHS=10 for both (a budget of its own: the summary pairs only equal budgets)
#   the probe (GPU_SUITE_PROBE) and the DDP smoke (needs 2 GPUs) only where the budget leaves time for them.
#
# The device gets this checkout and nothing beside it: no ../shared, no peer venv, no internet, python3 3.12 with
# torch but without pycocotools and ultralytics (/work/.library/device/README.md, KINDS.md). `prepare` stages
# .gpu-suite/ (git-ignored by its own .gitignore, so the call must name it in carry): deeppcb (hard links to
# ../shared/datasets/deeppcb, 51 MB), a copy of ../shared/bench/peer.py, and the wheels pycocotools (cp312),
# ultralytics and ultralytics-thop; `run` installs them into /tmp/gpu-suite-site where an interpreter lacks
# them. polars (a ~40 MB wheel) is left out: benchmarks/gpu_timed_train.py stands in for it. All of it must stay
# under the tool's 64 MiB. The device call, from the checkout the session's device tool sends:
#   run(command='GPU_SUITE_RUNS="dfl yolov5nu" bash benchmarks/gpu_suite.sh', carry=[".gpu-suite"], timeout_s=540)
# then copy the returned gpu-suite-<card>.json into benchmarks/results/ (and gpu-suite-logs.tgz for the logs).
#
# The CPU check (tiny: ~70 s on 2 cores; nvidia-smi absent, so utilisation is null with a note):
#   OMP_NUM_THREADS=1 GPU_SUITE_DEVICE=cpu GPU_SUITE_EPOCHS=1 GPU_SUITE_IMGSZ=128 GPU_SUITE_BATCH=4 \
#   GPU_SUITE_MAX_IMAGES=16 GPU_SUITE_WORKERS=0 GPU_SUITE_THREADS=1 GPU_SUITE_OUT=/tmp/gpu-suite-cpu.json \
#   bash benchmarks/gpu_suite.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=.gpu-suite
SITE=/tmp/gpu-suite-site
PEER_VENV=${PEER_VENV:-/tmp/peer-venv}

prepare() {
  mkdir -p "$STAGE/datasets" "$STAGE/bench" "$STAGE/whl"
  echo '*' > "$STAGE/.gitignore"  # the folder ignores itself: never committed, travels only when carried
  [ -d "$STAGE/datasets/deeppcb" ] || cp -al ../shared/datasets/deeppcb "$STAGE/datasets/" 2>/dev/null \
    || cp -a ../shared/datasets/deeppcb "$STAGE/datasets/"
  cp ../shared/bench/peer.py "$STAGE/bench/"
  local ul thop
  ul=$("$PEER_VENV/bin/python" -c "import importlib.metadata as m; print(m.version('ultralytics'))" 2>/dev/null \
    || echo 8.4.190)
  thop=$("$PEER_VENV/bin/python" -c "import importlib.metadata as m; print(m.version('ultralytics-thop'))" \
    2>/dev/null || echo 2.2.3)
  rm -f "$STAGE"/whl/*.whl
  # the device's python3 is CPython 3.12 on x86-64 (KINDS.md); --no-deps: it has numpy, torch, opencv, scipy...
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$STAGE/whl" pycocotools==2.0.11 "ultralytics==$ul" "ultralytics-thop==$thop"
  ls -la "$STAGE/whl"
  local tree staged
  # what travels besides the carried folder: tracked files and untracked ones git does not ignore
  tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb 2>/dev/null \
    | awk '$2 == "total" {s += $1} END {print s + 0}')
  staged=$(du -sbL "$STAGE" | cut -f1)
  echo "staged $((staged / 1048576)) MiB + working tree $((tree / 1048576)) MiB (the device tool takes 64 MiB)"
  [ $((staged + tree)) -lt $((62 * 1048576)) ] || echo "WARNING: over ~62 MiB: the call would be refused"
}

ensure_imports() {  # $1 python, $2 module: install the staged wheels where the interpreter lacks the module
  "$1" -c "import $2" 2>/dev/null && return 0
  ls "$STAGE"/whl/*.whl >/dev/null 2>&1 || { echo "$1 lacks $2 and $STAGE/whl has no wheels (run prepare)"; exit 2; }
  "$1" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$STAGE"/whl/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  "$1" -c "import $2"
}

run() {
  export GPU_SUITE_PY=${GPU_SUITE_PY:-python3}
  if [ -z "${GPU_SUITE_PEER_PY:-}" ]; then
    if [ -x "$PEER_VENV/bin/python" ]; then GPU_SUITE_PEER_PY=$PEER_VENV/bin/python; else GPU_SUITE_PEER_PY=$GPU_SUITE_PY; fi
  fi
  export GPU_SUITE_PEER_PY
  ensure_imports "$GPU_SUITE_PY" pycocotools
  case " ${GPU_SUITE_RUNS:-yolov5nu} $* " in
    *yolov5nu*|*yolo26n*) ensure_imports "$GPU_SUITE_PEER_PY" "ultralytics, pycocotools" ;;
  esac
  export PYTHONUNBUFFERED=1
  if [ "${GPU_SUITE_HSV_CHECK:-on}" != off ]; then  # ~10 s: the device's HSV pixels against OpenCV's, and their cost
    local dev=${GPU_SUITE_DEVICE:-0}
    "$GPU_SUITE_PY" -m benchmarks.gpu_hsv_check --device "${dev%%,*}" --out "${OUT:-/tmp}/gpu-hsv-check.json" \
      || echo "gpu_hsv_check failed (the runs go on)"
  fi
  # the result file and gpu-suite-logs.tgz are copied into $OUT (the device tool's) after every run
  "$GPU_SUITE_PY" -m benchmarks.gpu_suite "$@"
}

case "${1:-run}" in
  prepare) prepare ;;
  run) shift || true; run "$@" ;;
  *) run "$@" ;;
esac
