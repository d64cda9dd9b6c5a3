#!/usr/bin/env bash
# One lease (2026-12-03, fourth): onnxruntime's fpA_intB int4 kernels against its own, then the full serving
# table under the faster, with the CUDA test suite beside the (untimed) build.
#   PYTHONPATH=/tmp/site:$PYTHONPATH setsid nohup bash bench/fpa_gpu.sh /tmp/fp &
# 1. side by side: the 3.82 B model + pipeline build, and the CUDA suite (tests.log, junit.xml)
# 2. alone: engine (own kernels), engine-fpa (fpA_intB), `serving.py pick` (keeps the faster as the engine
#    part), then app, og, hf and the levers under the pick's setting, and the report.
set -uo pipefail
cd "$(dirname "$0")/.."
w=${1:-/tmp/fp}; mkdir -p "$w/out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 WORK=$w PYTHON=$py
(PART_TIMEOUT_S=480 BUDGET_S=500 HARD_S=560 PARTS="model build" bash bench/serving_gpu.sh "$w/out" >"$w/build.log" 2>&1
 echo $? >"$w/build.done") &
("$py" -m pytest -v -rfE -p no:cacheprovider tests -m "not browser and not pypi" -n "${TEST_WORKERS:-6}" --dist loadfile \
     --junitxml "$w/junit.xml" >"$w/tests.log" 2>&1
 echo $? >"$w/tests.done") &
wait
STUDIO_FPA_INTB=0 BUDGET_S=900 HARD_S=1000 PARTS="engine engine-fpa" bash bench/serving_gpu.sh "$w/out" >"$w/serving1.log" 2>&1
$py bench/serving.py pick --parts "$w/parts" >"$w/pick.log" 2>&1
fpa=$(sed -n 's/^STUDIO_FPA_INTB=//p' "$w/pick.log"); fpa=${fpa:-0}
echo "pick: STUDIO_FPA_INTB=$fpa" >>"$w/serving1.log"
STUDIO_FPA_INTB=$fpa BUDGET_S=900 HARD_S=1000 PARTS="app og hf engine-og engine-slots report" \
    bash bench/serving_gpu.sh "$w/out" >"$w/serving2.log" 2>&1
echo done >"$w/all.done"
