#!/usr/bin/env bash
# One lease (2026-12-03, fourth): onnxruntime's fpA_intB int4 kernels against its own, where a batch's time
# goes (bench/batch_steps.py), then the serving table's engine and app parts under the faster kernels.
#   PYTHONPATH=/tmp/site:$PYTHONPATH setsid nohup bash bench/fpa_gpu.sh /tmp/fp &
# 1. the 3.82 B model + pipeline build (TESTS=1: the CUDA suite beside it, tests.log + junit.xml)
# 2. alone: batch_steps (own kernels, then fpA_intB), engine (own), engine-fpa, `serving.py pick` (keeps the
#    faster as the engine part), then app (+ LATER parts, e.g. "og hf engine-og engine-slots") and the report.
set -uo pipefail
cd "$(dirname "$0")/.."
w=${1:-/tmp/fp}; mkdir -p "$w/out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 WORK=$w PYTHON=$py
(PART_TIMEOUT_S=480 BUDGET_S=500 HARD_S=560 PARTS="model build" bash bench/serving_gpu.sh "$w/out" >"$w/build.log" 2>&1
 echo $? >"$w/build.done") &
if [ "${TESTS:-0}" = 1 ]; then
  ("$py" -m pytest -v -rfE -p no:cacheprovider tests -m "not browser and not pypi" -n "${TEST_WORKERS:-6}" --dist loadfile \
       --junitxml "$w/junit.xml" >"$w/tests.log" 2>&1
   echo $? >"$w/tests.done") &
fi
wait
for f in 0 1; do
  STUDIO_FPA_INTB=$f timeout 200 "$py" bench/batch_steps.py "$w/ws" phi35 "$w/out/batch-steps-fpa$f.json" cuda 256 \
      >"$w/batch-steps-fpa$f.log" 2>&1
done
STUDIO_FPA_INTB=0 BUDGET_S=900 HARD_S=1000 PARTS="engine engine-fpa" bash bench/serving_gpu.sh "$w/out" >"$w/serving1.log" 2>&1
$py bench/serving.py pick --parts "$w/parts" >"$w/pick.log" 2>&1
fpa=$(sed -n 's/^STUDIO_FPA_INTB=//p' "$w/pick.log"); fpa=${fpa:-0}
echo "pick: STUDIO_FPA_INTB=$fpa" >>"$w/serving1.log"
STUDIO_FPA_INTB=$fpa BUDGET_S=900 HARD_S=1000 PARTS="app ${LATER:-} report" \
    bash bench/serving_gpu.sh "$w/out" >"$w/serving2.log" 2>&1
cp "$w"/parts/*.json "$w"/*.log "$w/out/" 2>/dev/null
echo done >"$w/all.done"
