"""The build's stages, in order: ONE registry (name, weight in the progress bar, function) that the runner
runs and the job view lists. A stage function takes (job: runner.JobRunner, stage_dir) and returns its
outputs (a JSON-able dict); `_skip: reason` in them marks it skipped (e.g. AWQ when building onto a base),
`_cached: path` as served from the content-hash cache."""
from __future__ import annotations

from pipeline import (stage_adapter, stage_awq, stage_evaluate, stage_finetune, stage_onnx, stage_prepare,
                      stage_publish)

STAGES = [
    ("prepare", 0.05, stage_prepare.run),    # model, data (held-out split), templates
    ("awq", 0.15, stage_awq.run),            # AWQ-prepared weights (skipped onto a published base)
    ("finetune", 0.45, stage_finetune.run),  # LoRA through Olive, checkpoints, resume
    ("onnx", 0.15, stage_onnx.run),          # int4 ONNX base with LoRA slots (skipped onto a base)
    ("adapter", 0.05, stage_adapter.run),    # PEFT -> .onnx_adapter + metadata, in the job folder
    ("evaluate", 0.10, stage_evaluate.run),  # held-out loss and greedy answers on the served model
    ("publish", 0.05, stage_publish.run),    # atomic publish into adapters/ (replace keeps .previous)
]
STAGE_NAMES = [name for name, _, _ in STAGES]
WEIGHTS = {name: weight for name, weight, _ in STAGES}
