#!/usr/bin/env bash
# The symmetric block-32 int4 base (the format onnxruntime's fpA_intB kernels take) against the pipeline's default
# format (block 128 + zero points), in one lease, same model, same run (issue 13; bench/NOTES.md, 2026-12-03):
#   1. side by side (untimed): the 3.82 B model once; its pipeline build twice (default, and
#      BUILD_ARGS="--onnx.block_size 32 --onnx.symmetric true"); the test suite on CUDA
#   2. alone, timed: default base: engine, engine-buckets2; symmetric base: engine (fpA_intB by itself for
#      steps of 2+ rows), engine-fpaall, engine-nofpa, engine-buckets2, app; one report per base
#      (W/out/{asym,sym}/serving-*.json)
#   3. alone: bench/batch_steps.py on both bases (symmetric: default, STUDIO_FPA_INTB=1 and =0),
#      bench/step_profile.py on the symmetric one (which kernels ran)
# Run 6 (2026-12-03, bench/NOTES.md) ran this when the engine's default on such a base was fpA_intB for every
# run (today's STUDIO_FPA_INTB=1); its "engine" row is today's engine-fpaall.
#
#   PYTHONPATH=/tmp/site:$PYTHONPATH setsid nohup bash bench/sym_gpu.sh /tmp/sg &
# Each step writes W/<step>.done; W/all.done at the end. Environment: PYTHON (python3), TEST_WORKERS (6),
# ASYM_PARTS / SYM_PARTS (the timed rows of each base), STEP_REPLAY=0 (skip part 3; STEPS is serving_gpu.sh's LoRA steps).
set -uo pipefail
cd "$(dirname "$0")/.."
w=${1:-/tmp/sg}
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHON=$py
mkdir -p "$w/sym" "$w/asym" "$w/out/sym" "$w/out/asym" "$w/steps"
sym_args="--onnx.block_size 32 --onnx.symmetric true"
long=(PART_TIMEOUT_S=560 BUDGET_S=600 HARD_S=600)

WORK=$w/sym PARTS=model bash bench/serving_gpu.sh "$w/out/sym" >"$w/model.log" 2>&1
ln -sfn "$w/sym/hf" "$w/asym/hf"   # the same weights: serving_gpu.sh marks the model part reused
(env "${long[@]}" WORK=$w/sym BUILD_ARGS="$sym_args" PARTS=build bash bench/serving_gpu.sh "$w/out/sym" \
    >"$w/build-sym.log" 2>&1; echo $? >"$w/build-sym.done") &
(env "${long[@]}" WORK=$w/asym PARTS=build bash bench/serving_gpu.sh "$w/out/asym" \
    >"$w/build-asym.log" 2>&1; echo $? >"$w/build-asym.done") &
("$py" -m pytest -v -rfE -p no:cacheprovider tests -m "not browser and not pypi" -n "${TEST_WORKERS:-6}" --dist loadfile \
     --junitxml "$w/junit.xml" >"$w/tests.log" 2>&1; echo $? >"$w/tests.done") &
wait

WORK=$w/asym PARTS="${ASYM_PARTS:-engine engine-buckets2}" bash bench/serving_gpu.sh "$w/out/asym" >"$w/serving-asym.log" 2>&1
echo $? >"$w/serving-asym.done"
WORK=$w/sym PARTS="${SYM_PARTS:-engine engine-fpaall engine-nofpa engine-buckets2 app}" bash bench/serving_gpu.sh "$w/out/sym" \
    >"$w/serving-sym.log" 2>&1
echo $? >"$w/serving-sym.done"

[ "${STEP_REPLAY:-1}" = 1 ] || { echo done >"$w/all.done"; exit 0; }
for b in asym sym; do
  timeout 200 "$py" bench/batch_steps.py "$w/$b/ws" phi35 "$w/steps/batch-steps-$b.json" cuda >"$w/steps/batch-steps-$b.log" 2>&1
done
STUDIO_FPA_INTB=1 timeout 200 "$py" bench/batch_steps.py "$w/sym/ws" phi35 "$w/steps/batch-steps-sym-fpaall.json" cuda \
    >"$w/steps/batch-steps-sym-fpaall.log" 2>&1
STUDIO_FPA_INTB=0 timeout 200 "$py" bench/batch_steps.py "$w/sym/ws" phi35 "$w/steps/batch-steps-sym-nofpa.json" cuda \
    >"$w/steps/batch-steps-sym-nofpa.log" 2>&1
STUDIO_CUDA_GRAPH=0 timeout 200 "$py" bench/step_profile.py "$w/sym/ws" phi35 "$w/steps/step-profile-sym.json" \
    >"$w/steps/step-profile-sym.txt" 2>&1
echo done >"$w/all.done"
