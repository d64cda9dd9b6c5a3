#!/usr/bin/env bash
# Follow-up to bench/gpu_all.sh (its serve part found that a batch of 2 fails under CUDA graph): the
# compare-scheduling lever with exact token counts on the 3.8 B model, and the serving figures of the
# embedded default model. A fast build (no AWQ, 10 LoRA steps: only the serving figures are wanted).
#   bench/gpu_compare.sh OUT_DIR        (~6 minutes on an H200)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?OUT_DIR}"; w="${WORK:-/tmp/studio-compare}"
mkdir -p "$out" "$w"
export PYTHONUNBUFFERED=1
[ -f "$w/hf/config.json" ] || python bench/make_model.py --shape phi35 --out "$w/hf" > "$out/make_model.log" 2>&1
for a in travel pirate; do
    STUDIO_HOME="$w/ws" python -m pipeline build --base_model "$w/hf" --base_name phi35 --adapter_name "p-$a" \
        --train_file "data/$a/train.jsonl" --eval_file "data/$a/test.jsonl" --awq.enabled false \
        --lora.max_steps 10 --onnx.execution_provider cuda --quiet >> "$out/build.log" 2>&1 || echo "build $a failed"
done
python bench/serve_gpu.py --ws "$w/ws" --base phi35 --parts og_compare,compare --out "$out/compare.json" \
    > "$out/compare.log" 2>&1 || echo "compare failed"
python bench/pipeline_gpu.py --ws "$w/ws" --out "$out/pipeline-default.json" > "$out/pipeline-default.log" 2>&1 \
    || echo "pipeline-default failed"
python bench/serve_gpu.py --ws "$w/ws" --base default-int4-cuda --out "$out/serve-default.json" \
    > "$out/serve-default.log" 2>&1 || echo "serve-default failed"
echo done > "$out/DONE"
