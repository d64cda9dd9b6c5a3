#!/usr/bin/env bash
# Every GPU figure of the README in one command, on a machine with a CUDA GPU and the GPU set
# (requirements.txt) installed; about 25 minutes on an H200. Results: bench/results/<gpu>-<date>-*.json.
# (On the workplace's device machine, whose calls are limited to 10 minutes, the same scripts were run
# one per call: see bench/NOTES.md.)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench/results}"
tag="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-' | tr 'A-Z' 'a-z')-$(date +%F)"
work="${WORK:-/tmp/studio-bench}"
mkdir -p "$out" "$work"
export PYTHONUNBUFFERED=1
python bench/make_model.py --shape phi35 --out "$work/hf"
# decode/TTFT rows (transformers + PEFT, int4 without/with slots, builder vs fused layout, CUDA graph),
# adapter switch, memory per adapter, compare mode
python bench/run.py --model "$work/hf" --work "$work/w" --parts onnx,extras,rewrites,hf --quant 32:0 \
    --budget 100000 --out "$out/$tag-main.json"
python bench/profile_lora.py profile --model "$work/hf" --work "$work/w" --device cuda --levers fuse_qkv \
    --out "$out/$tag-profile.json"
# the pipeline's own builds: stage times and sizes, then the engine and exact-length rows on them
python bench/pipeline_gpu.py --phi35 "$work/hf" --ws "$work/ws" --out "$out/$tag-pipeline.json"
python bench/engine_gpu.py --model "$work/hf" --ws "$work/eng" --out "$out/$tag-engine.json"
STUDIO_HOME="$work/eng" python -m pipeline build --base_model "$work/hf" --base_name gpu-base-32 \
    --adapter_name b32 --awq.enabled false --lora.max_steps 10 --onnx.execution_provider cuda \
    --onnx.block_size 32 --onnx.accuracy_level 0 --quiet
python bench/og_rows.py --ws "$work/eng" --bases gpu-base,gpu-base-32 --out "$out/$tag-og-rows.json"
echo "results in $out/$tag-*.json"
