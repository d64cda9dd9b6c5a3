#!/usr/bin/env bash
# The STUDIO_BASE_RANK0 default on the GPU (2026-12-03, after the lever row engine-base0): rebuild the serving
# harness's model, check base/adapter greedy answers equal with and without the rank-0 binding (base0_check.py),
# then time the engine and the app with the new default.   setsid nohup bash bench/base0_gpu.sh /tmp/sv &
set -uo pipefail
cd "$(dirname "$0")/.."
w=${1:-/tmp/sv}; mkdir -p "$w/out"
export PYTHONUNBUFFERED=1 WORK=$w PYTHON=${PYTHON:-python3}
PART_TIMEOUT_S=450 BUDGET_S=500 HARD_S=560 PARTS="model build" bash bench/serving_gpu.sh "$w/out" >"$w/build.log" 2>&1
$PYTHON bench/base0_check.py "$w/ws" phi35 "$w/out/base0-check.json" >"$w/base0.log" 2>&1
PARTS="engine app report" bash bench/serving_gpu.sh "$w/out" >"$w/serving.log" 2>&1
echo done >"$w/all.done"
