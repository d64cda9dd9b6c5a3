#!/usr/bin/env bash
# The GPU benchmark harness, one command: every figure of the README's performance table, measured in
# one run on a machine with a CUDA GPU and the GPU set (requirements.txt) installed.
#
#   bench/gpu_all.sh [RESULTS_DIR]        (WORK=/tmp/studio-bench by default; about 20 minutes on an H200)
#
# On a Phi-3.5-mini-shaped model (bench/make_model.py: random weights, 3.82 B parameters) and on the
# embedded default model, everything built by the pipeline itself (AWQ -> Olive LoRA -> int4 ONNX with
# LoRA slots -> .onnx_adapter) with its default settings:
#   hf        transformers + PEFT (what a user would otherwise run): decode tokens/s, TTFT 16 / 1024
#   pipeline  stage times: full build (AWQ + 100 LoRA steps + int4 ONNX + adapter), second adapter
#   serve     onnxruntime-genai as the app serves it: base / adapter decode tokens/s and TTFT, CUDA graph
#             off/on, adapter switch, memory per extra adapter, compare mode (batched vs interleaved)
#   trace     GPU kernel time per token (CUPTI): where the time goes, what an adapter adds
#   iobinding the I/O binding lever: plain onnxruntime loops with host round trips vs device binding
#   finetune  the fine-tuning levers: batch size and data loading
#   default   pipeline + serve on the embedded default model
# Each part writes $WORK/parts/<part>.json and $WORK/logs/<part>.log and a failed part does not stop the
# others. bench/report.py then merges them into RESULTS_DIR/<device>-<date>.json and prints the Markdown
# table for the README. PARTS="hf pipeline ..." runs a subset; a part whose JSON exists is skipped
# (delete it to measure again), so an interrupted run resumes.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench/results}"
work="${WORK:-/tmp/studio-bench}"
parts="${PARTS:-hf pipeline serve trace finetune iobinding default}"
mkdir -p "$out" "$work/parts" "$work/logs"
export PYTHONUNBUFFERED=1
hf="$work/hf"
ws="$work/ws"
base=phi35-int4-cuda

run() {  # run PART CMD...: skipped when its JSON exists; logs to $work/logs/PART.log
    local part=$1; shift
    if [ -s "$work/parts/$part.json" ]; then echo "== $part: done before, skipped"; return 0; fi
    echo "== $part ($(date +%T))"
    local t0=$SECONDS
    "$@" >"$work/logs/$part.log" 2>&1
    local rc=$?
    echo "== $part: exit $rc after $((SECONDS - t0)) s"
    [ $rc -eq 0 ] || tail -20 "$work/logs/$part.log"
    return 0
}
want() { case " $parts " in *" $1 "*) return 0;; *) return 1;; esac; }

pip freeze >"$work/parts/pip-freeze.txt" 2>/dev/null || true
[ -f "$hf/config.json" ] || python bench/make_model.py --shape phi35 --out "$hf" >"$work/logs/make_model.log" 2>&1 \
    || { echo "make_model failed"; tail -20 "$work/logs/make_model.log"; exit 1; }

want hf && run hf python bench/run.py --model "$hf" --work "$work/w" --parts hf --budget 100000 \
    --out "$work/parts/hf.json"
want pipeline && run pipeline python bench/pipeline_gpu.py --phi35 "$hf" --skip-default --ws "$ws" \
    --out "$work/parts/pipeline.json"
want serve && run serve python bench/serve_gpu.py --ws "$ws" --base "$base" --out "$work/parts/serve.json"
adapter="$ws/adapters/phi35-travel/adapter.onnx_adapter"
want trace && run trace python bench/gpu_trace.py --model "$ws/models/$base" --adapter "$adapter" \
    --adapter2 "$ws/adapters/phi35-pirate/adapter.onnx_adapter" --out "$work/parts/trace.json"
want finetune && run finetune python bench/finetune_levers.py --model "$hf" --train data/travel/train.jsonl \
    --device cuda --out "$work/parts/finetune.json"
# (--kv grow: present fed back as the next past, if binding one shared KV buffer fails in plain ORT)
want iobinding && run iobinding sh -c "python bench/iobinding.py --model '$ws/models/$base' --adapter '$adapter' \
    --device cuda --out '$work/parts/iobinding.json' || python bench/iobinding.py --kv grow \
    --model '$ws/models/$base' --adapter '$adapter' --device cuda --out '$work/parts/iobinding.json'"
if want default; then
    run hf-default python bench/run.py --model models/default-hf --peft adapters/travel/peft \
        --work "$work/w-default" --parts hf --budget 100000 --out "$work/parts/hf-default.json"
    run pipeline-default python bench/pipeline_gpu.py --ws "$ws" --out "$work/parts/pipeline-default.json"
    run serve-default python bench/serve_gpu.py --ws "$ws" --base default-int4-cuda \
        --out "$work/parts/serve-default.json"
fi
python bench/report.py --parts "$work/parts" --out-dir "$out"
