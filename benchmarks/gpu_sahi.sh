#!/usr/bin/env bash
# Our sliced inference against SAHI's on one GPU (issue 38: "at least 3x its images/s"): benchmarks/sahi_compare.py
# with --device, on aerial-cars val, the same weights, windows, thresholds and merge on both sides.
#
#   bash benchmarks/gpu_sahi.sh prepare      # here, on the CPU machine, before the device call
#   bash benchmarks/gpu_sahi.sh [run]        # on the device (or here with GPU_SAHI_DEVICE=cpu)
#
# On a CPU the forward is the same work on both sides and takes ~80% of our time, so no merge or batching can
# make ours 3x SAHI's there (benchmarks/results/sahi-compare-aerial-cars.json: 1.34-1.48x on one thread). On a
# GPU the forward shrinks and what remains is how each side organises the windows (ours batched, SAHI one per
# forward) and merges them: that is what this call measures.
#
# prepare stages .gpu-sahi/ (git-ignored by its own .gitignore, so the call must name it in carry): aerial-cars
# val (hard links, 20 MB) with a data YAML, the weights without their optimizer state (GPU_SAHI_WEIGHTS, default
# the 20-epoch dfl-half r4 model the CPU comparison used), and cp312 wheels of what the device lacks (sahi
# without its dependencies, shapely, fire, termcolor, pycocotools). run installs them into /tmp/gpu-sahi-site
# where the interpreter lacks them and writes sahi-compare-aerial-cars-<device>.json into $OUT.
#   run(command='bash benchmarks/gpu_sahi.sh', carry=[".gpu-sahi"], timeout_s=300)
# Settings (environment): GPU_SAHI_DEVICE=0  GPU_SAHI_CONF=0.001  GPU_SAHI_BATCH=16 (our windows per forward; SAHI
# keeps its default 1)  GPU_SAHI_MAX_IMAGES=0 (all 47)  GPU_SAHI_SETTINGS="nms nms+full greedy-nmm-ios
# greedy-nmm-ios+full"  GPU_SAHI_PY=python3.
# The CPU check (~1 min): GPU_SAHI_DEVICE=cpu GPU_SAHI_MAX_IMAGES=2 GPU_SAHI_SETTINGS=nms OUT=/tmp \
#   bash benchmarks/gpu_sahi.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=.gpu-sahi
SITE=/tmp/gpu-sahi-site

prepare() {
  local src=../shared/datasets/aerial-cars weights=${GPU_SAHI_WEIGHTS:-/tmp/w38/aerial-dfl-half-r4-20ep.pt}
  [ -f "$weights" ] || { echo "no weights at $weights: set GPU_SAHI_WEIGHTS to a trained aerial-cars .pt"; exit 2; }
  mkdir -p "$STAGE/aerial-cars/annotations" "$STAGE/aerial-cars/images" "$STAGE/whl"
  echo '*' > "$STAGE/.gitignore"  # the folder ignores itself: never committed, travels only when carried
  [ -d "$STAGE/aerial-cars/images/val" ] || cp -al "$src/images/val" "$STAGE/aerial-cars/images/" 2>/dev/null \
    || cp -a "$src/images/val" "$STAGE/aerial-cars/images/"
  cp "$src/annotations/instances_val.json" "$STAGE/aerial-cars/annotations/"
  printf 'path: .\nval: {json: annotations/instances_val.json, images: images/val}\ntrain: {json: annotations/instances_val.json, images: images/val}\n' \
    > "$STAGE/aerial-cars/data.yaml"
  "${GPU_SAHI_PY:-python3}" -m benchmarks.strip_weights "$weights" "$STAGE/weights.pt"
  rm -f "$STAGE"/whl/*.whl
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$STAGE/whl" sahi==0.12.8 shapely==2.2.0 fire termcolor pycocotools==2.0.11
  ls -la "$STAGE/whl"
  echo "staged $(($(du -sbL "$STAGE" | cut -f1) / 1048576)) MiB (with the working tree, the device tool takes 64 MiB)"
}

run() {
  local py=${GPU_SAHI_PY:-python3} out=${OUT:-/tmp}
  if ! "$py" -c "import sahi, shapely, fire, pycocotools" 2>/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$STAGE"/whl/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  fi
  local dev=${GPU_SAHI_DEVICE:-0} tag
  tag=$("$py" -c "import sys, torch; d = sys.argv[1]; print('cpu' if d == 'cpu' else \
torch.cuda.get_device_name(int(d)).lower().replace('nvidia ', '').split()[0])" "$dev")
  # shellcheck disable=SC2086
  "$py" -m benchmarks.sahi_compare --weights "$STAGE/weights.pt" --data "$STAGE/aerial-cars/data.yaml" \
    --slice 640 --overlap 0.2 --conf "${GPU_SAHI_CONF:-0.001}" --iou 0.5 --device "$dev" \
    --batch "${GPU_SAHI_BATCH:-16}" --max-images "${GPU_SAHI_MAX_IMAGES:-0}" \
    --settings ${GPU_SAHI_SETTINGS:-nms nms+full greedy-nmm-ios greedy-nmm-ios+full} \
    --out "$out/sahi-compare-aerial-cars-$tag.json"
}

case "${1:-run}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: bash benchmarks/gpu_sahi.sh [prepare|run]"; exit 2 ;;
esac
