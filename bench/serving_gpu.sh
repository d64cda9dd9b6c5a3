#!/usr/bin/env bash
# The serving harness (issue 13), one command: every figure of the README's serving table from one run,
# side by side with the onnxruntime-genai loop and transformers + PEFT, on a Phi-3.5-mini-shaped model
# (bench/make_model.py: random weights, 3.82 B parameters) built by the pipeline itself (int4 ONNX with
# LoRA slots, rows layout, two adapters; AWQ off and 10 LoRA steps: only the serving figures are wanted).
#
#   bench/serving_gpu.sh [RESULTS_DIR]      (at most ~9 minutes on an H200; RESULTS_DIR: bench/results)
#
# Parts, in this order (PARTS="..." runs a subset):
#   model           bench/make_model.py --shape phi35 (skipped when WS is given)
#   build           base + travel/pirate adapters through `python -m pipeline build` (skipped when WS is given)
#   engine          ChatEngine, the backend it picks (ort on CUDA): backend loop, stream, TTFT 1024, compare,
#                   8 users, adapter switch with 2 and 100 adapters, memory per adapter
#   app             the launched app through gradio_client: /chat base, adapter, compare, 8 clients
#   app-nopace      (not in the default list) the app part with STUDIO_STREAM_TOTAL_HZ=0: every stream gets its
#                   own ~25 updates/s, no shared budget (the default shares ~50/s among all streams)
#   og              the onnxruntime-genai loop, base and adapter, TTFT 1024
#   hf              transformers + PEFT (bench/run.py --parts hf, 64 new tokens)
#   engine-og       lever row: the engine forced onto the og backend (STUDIO_BACKEND=og)
#   engine-nograph  lever row: the ort backend without CUDA graph (STUDIO_CUDA_GRAPH=0)
#   engine-len1024  lever row: static buffers of 1,024 tokens instead of the 4,096 context (STUDIO_MAX_LENGTH)
#   engine-rank16   lever row: LoRA slots of rank 16 instead of 64 (STUDIO_LORA_RANK; the adapters are r16)
#   engine-slots    lever row: base-only steps run the full LoRA slots (STUDIO_BASE_RANK0=0; the default binds
#                   rank-0 LoRA inputs for them since 2026-12-03, when this row was engine-base0 and measured +25 %)
#   engine-buckets2 lever row, the full engine part: two rows decode in a 2-row graph (STUDIO_BUCKETS=1,2,4,8);
#                   the CUDA default since 2026-12-03 runs them in the 4-row graph (cheaper on the int4 kernels)
#   fused-check     (untimed) greedy answers of the engine with the fused LoRA op and with the MatMul chain, compared
#   engine-chain    lever row, the full engine part: the LoRA targets as onnxruntime's MatMul, MatMul, Add (four
#                   kernels each on CUDA) instead of the fused op (STUDIO_LORA_FUSED=off; default auto = fused on CUDA)
#   engine-fusedk   lever row, the full engine part: the fused op on K-first A slots (STUDIO_LORA_A_T=0, the op
#                   LoraAdd) instead of rank-first ones (the default with the fused op, LoraAddAT)
#   engine-expand1  lever row, the full engine part: the prompt's expand kernel on one column per thread
#                   (STUDIO_LORA_KERNEL=expand1) instead of two fp16 columns (lora_expand_h2, the default)
#   engine-prompt1  lever row, the full engine part: prompts through the fused op's single prompt kernel (one block
#                   per 8 tokens; STUDIO_LORA_KERNEL=tile) instead of its two-kernel path (x·A, then the expand)
#   engine-at       (not in the default list) the full engine part with STUDIO_LORA_A_T=1: the LoRA-A products
#                   read A transposed (FusedMatMul transB=1), which may spare cuBLAS's split-K pair (lora_gemm.py)
#   engine-nofpa    (not in the default list) the full engine part with STUDIO_FPA_INTB=0: on a base built with
#                   BUILD_ARGS="--onnx.block_size 32 --onnx.symmetric true" the engine uses onnxruntime's fpA_intB
#                   int4 kernels by itself for steps of 2+ rows (bench/NOTES.md, run 6); this row is the same base
#                   on its own kernels only
#   engine-fpaall   (not in the default list) the same with STUDIO_FPA_INTB=1: fpA_intB for every run (one session)
#   report          merges the parts into RESULTS_DIR/serving-<device>-<date>.json (`summary`) - always runs
# Each part writes $WORK/parts/<part>.json and $WORK/logs/<part>.log; a failed part does not stop the
# others (its log tail goes into the report); a part whose JSON exists is skipped, so a second run resumes.
# Time: a part is not started once BUDGET_S seconds (default 440) have passed; each is killed after
# PART_TIMEOUT_S (default 300) or at HARD_S (default 520) seconds into the run, whichever comes first.
# Environment: WORK (/tmp/studio-serving), DEVICE (cuda | cpu), WS + BASE (an existing workspace and base:
# no model/build), BUILD_ARGS (more recipe options for the base), TOKENS (256), REPS (3), LONG (1024), USERS (8), MANY (100), STEPS (10), SHAPE (phi35;
# "default": a tiny model, for a dry run of every part on the CPU).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench/results}"
work="${WORK:-/tmp/studio-serving}"
device="${DEVICE:-cuda}"
hf="$work/hf"
ws="${WS:-$work/ws}"
base="${BASE:-phi35}"
parts="${PARTS:-model build engine app og hf engine-og engine-nograph engine-len1024 engine-rank16 engine-slots engine-buckets2 fused-check engine-chain engine-expand1 engine-fusedk engine-prompt1 report}"
budget="${BUDGET_S:-440}"
hard="${HARD_S:-520}"
part_timeout="${PART_TIMEOUT_S:-300}"
py="${PYTHON:-python}"
mkdir -p "$out" "$work/parts" "$work/logs"
export PYTHONUNBUFFERED=1
common=(--ws "$ws" --base "$base" --device "$device" --tokens "${TOKENS:-256}" --reps "${REPS:-3}"
        --long "${LONG:-1024}" --users "${USERS:-8}" --many "${MANY:-100}")
want() { case " $parts " in *" $1 "*) return 0;; *) return 1;; esac; }

run() {  # run PART CMD...: skipped when its JSON exists or the budget is spent; logs to $work/logs/PART.log
    local part=$1; shift
    local json="$work/parts/$part.json"
    if [ -s "$json" ]; then echo "== $part: done before, skipped"; return 0; fi
    if [ "$SECONDS" -ge "$budget" ]; then
        echo "== $part: not started, budget of $budget s spent" | tee "$work/logs/$part.log"; return 0
    fi
    local limit=$((hard - SECONDS))
    [ "$limit" -gt "$part_timeout" ] && limit=$part_timeout
    echo "== $part ($(date +%T), ${SECONDS}s in, limit ${limit}s)"
    local t0=$SECONDS
    timeout -k 10 "$limit" "$@" >"$work/logs/$part.log" 2>&1
    local rc=$?
    echo "== $part: exit $rc after $((SECONDS - t0)) s"
    if [ $rc -ne 0 ]; then
        rm -f "$json"
        echo "exit $rc after $((SECONDS - t0)) s" >>"$work/logs/$part.log"
        tail -15 "$work/logs/$part.log"
    elif [ ! -s "$json" ]; then  # a step that writes no JSON of its own
        printf '{"part": "%s", "exit": 0, "seconds": %d}\n' "$part" $((SECONDS - t0)) >"$json"
    fi
    return 0
}

"$py" -m pip freeze >"$work/parts/pip-freeze.txt" 2>/dev/null || true
if [ -z "${WS:-}" ]; then
    if [ -f "$hf/config.json" ] && [ ! -s "$work/parts/model.json" ]; then
        printf '{"part": "model", "reused": true}\n' >"$work/parts/model.json"
    fi
    want model && run model "$py" bench/make_model.py --shape "${SHAPE:-phi35}" --out "$hf" --device "$device"
    want build && run build "$py" bench/serving.py build --hf "$hf" --steps "${STEPS:-10}" "${common[@]}" \
        --build-args "${BUILD_ARGS:-}" --out "$work/parts/build.json"
fi
want engine && run engine "$py" bench/serving.py engine "${common[@]}" --out "$work/parts/engine.json"
want app && run app "$py" bench/serving.py app "${common[@]}" --out "$work/parts/app.json"
want app-nopace && run app-nopace env STUDIO_STREAM_TOTAL_HZ=0 "$py" bench/serving.py app "${common[@]}" \
    --out "$work/parts/app-nopace.json"
want og && run og "$py" bench/serving.py og "${common[@]}" --out "$work/parts/og.json"
if want hf && [ -z "${WS:-}" ]; then
    run hf "$py" bench/run.py --model "$hf" --work "$work/w" --parts hf --device "$device" --budget 100000 \
        --new-tokens 64 --hf-runs 1 --warmup 1 --ttft-prompt "${LONG:-1024}" --out "$work/parts/hf.json"
fi
want engine-og && run engine-og env STUDIO_BACKEND=og "$py" bench/serving.py engine --quick "${common[@]}" \
    --out "$work/parts/engine-og.json"
want engine-nograph && run engine-nograph env STUDIO_CUDA_GRAPH=0 "$py" bench/serving.py engine --quick \
    "${common[@]}" --out "$work/parts/engine-nograph.json"
want engine-len1024 && run engine-len1024 env STUDIO_MAX_LENGTH=1024 "$py" bench/serving.py engine --quick \
    "${common[@]}" --out "$work/parts/engine-len1024.json"
want engine-rank16 && run engine-rank16 env STUDIO_LORA_RANK=16 "$py" bench/serving.py engine --quick \
    "${common[@]}" --out "$work/parts/engine-rank16.json"
want engine-buckets2 && run engine-buckets2 env STUDIO_BUCKETS=1,2,4,8 "$py" bench/serving.py engine \
    "${common[@]}" --out "$work/parts/engine-buckets2.json"
want fused-check && run fused-check "$py" bench/fused_check.py --ws "$ws" --base "$base" --device "$device" \
    --out "$work/parts/fused-check.json"
want engine-chain && run engine-chain env STUDIO_LORA_FUSED=off "$py" bench/serving.py engine \
    "${common[@]}" --out "$work/parts/engine-chain.json"
want engine-prompt1 && run engine-prompt1 env STUDIO_LORA_KERNEL=tile "$py" bench/serving.py engine \
    "${common[@]}" --out "$work/parts/engine-prompt1.json"
want engine-expand1 && run engine-expand1 env STUDIO_LORA_KERNEL=expand1 "$py" bench/serving.py engine \
    "${common[@]}" --out "$work/parts/engine-expand1.json"
want engine-fusedk && run engine-fusedk env STUDIO_LORA_A_T=0 "$py" bench/serving.py engine \
    "${common[@]}" --out "$work/parts/engine-fusedk.json"
want engine-at && run engine-at env STUDIO_LORA_A_T=1 STUDIO_LORA_FUSED=off "$py" bench/serving.py engine \
    "${common[@]}" --out "$work/parts/engine-at.json"
want engine-nofpa && run engine-nofpa env STUDIO_FPA_INTB=0 "$py" bench/serving.py engine \
    "${common[@]}" --out "$work/parts/engine-nofpa.json"
want engine-fpaall && run engine-fpaall env STUDIO_FPA_INTB=1 "$py" bench/serving.py engine \
    "${common[@]}" --out "$work/parts/engine-fpaall.json"
want engine-slots && run engine-slots env STUDIO_BASE_RANK0=0 "$py" bench/serving.py engine --quick \
    "${common[@]}" --out "$work/parts/engine-slots.json"
"$py" bench/serving.py report --parts "$work/parts" --logs "$work/logs" --device "$device" --long "${LONG:-1024}" \
    --out-dir "$out" 2>&1 | tee "$work/logs/report.log"
