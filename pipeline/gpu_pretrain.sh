#!/usr/bin/env bash
# Pre-train the embedded default model on one GPU (needs only torch + transformers + tokenizers).
#
#   bash pipeline/gpu_pretrain.sh OUT_DIR [DROPOUT ...]
#
# One run of `python -m pipeline.tiny` per dropout value, side by side on the same GPU (the model is
# small), each into OUT_DIR/d<dropout>/ with its TRAINING.json; OUT_DIR/summary.json lists them.
# The shipped models/default-hf is the run with the lowest held-out loss (6 layers x 384, 1,000 steps, dropout
# 0.3, of STEPS=1000 ... 0.3 0.4 0.5; 3,200 steps overfit: bench/results/pretrain-h200-2026-12-03.json).
# Each folder is also packed as d<dropout>.tar.part-* (15 MB parts) for transfers with a file-size cap.
set -euo pipefail
out=${1:?usage: gpu_pretrain.sh OUT_DIR [DROPOUT ...]}
shift
drops=("${@:-0.1}")
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
py="${PYTHON:-python3}"  # the GPU image has python3 (with torch), not always python
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
pids=()
for d in "${drops[@]}"; do
  "$py" -m pipeline.tiny --device cuda --steps "${STEPS:-1000}" ${WARMUP:+--warmup $WARMUP} ${MAX_TRAIN_SECONDS:+--max-train-seconds $MAX_TRAIN_SECONDS} --layers 6 --hidden 384 --heads 6 --intermediate 1024 \
    --dropout "$d" --eval-every 400 --out "$out/d$d" >"$out/d$d.log" 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
"$py" - "$out" "${drops[@]}" <<'PY'
import json, sys
from pathlib import Path
out, drops = Path(sys.argv[1]), sys.argv[2:]
runs = []
for d in drops:
    t = out / f"d{d}" / "TRAINING.json"
    if t.exists():
        r = json.loads(t.read_text())
        runs.append({k: r[k] for k in ("command", "parameters", "weights_bytes", "steps", "tokens_seen", "dropout",
                                       "device", "train_seconds", "seconds", "final_train_loss", "final_eval_loss",
                                       "eval_history", "samples")})
(out / "summary.json").write_text(json.dumps({"runs": runs, "parallel_runs": len(drops)}, indent=2) + "\n")
for r in runs:
    print(r["dropout"], r["train_seconds"], "s", r["final_train_loss"], r["final_eval_loss"])
    for s in r["samples"]:
        print("  Q:", s["prompt"], "\n  A:", s["answer"])
PY
best=$("$py" -c 'import json,sys; r=json.load(open(sys.argv[1]))["runs"]; print(min(r, key=lambda x: x["final_eval_loss"])["dropout"] if r else "")' "$out/summary.json")
echo "best (lowest held-out loss): dropout $best"; echo "$best" >"$out/best"
for d in "${drops[@]}"; do
  [ -d "$out/d$d" ] && tar -C "$out" -cf - "d$d" | split -b 15000000 - "$out/d$d.tar.part-"
done
exit $rc
