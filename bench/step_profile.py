"""Where one decode step's GPU time goes, per CUDA kernel: the ort backend without CUDA graph
(STUDIO_CUDA_GRAPH=0, so every kernel is its own launch that CUPTI sees), requests submitted straight to the
backend, profiled with torch.profiler (CUPTI sees onnxruntime's kernels in the same process). Two cases:
one adapter row (batch 1) and 8 rows over base + 2 adapters. Prints per case the kernel time per step and the
top kernels (ms per step, launches per step, name).

    STUDIO_CUDA_GRAPH=0 python bench/step_profile.py WS BASE [OUT.json]
Seen 2026-12-03 on the H200 (bench/results/raw/step-profile-2026-12-03.txt, bench/NOTES.md).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common as C  # noqa: E402
from engine.chat import ChatEngine  # noqa: E402

STEPS = 64


def main() -> None:
    ws, base = Path(sys.argv[1]), sys.argv[2]
    eng = ChatEngine(ws / "models" / base, ws / "adapters", provider="cuda")
    assert eng.backend_name == "ort", eng.backend_why
    ads = sorted(v for v in eng.variants() if v != "base")
    ids, _ = eng.encode([{"role": "user", "content": "Plan a trip to Lisbon."}], 1)

    def go(vs, n=STEPS):
        C.run_rows(eng, vs, ids, n)

    out = {}
    go(["base", ads[0]], 8)
    for label, vs in (("adapter1", [ads[0]]), ("mixed8", (["base", ads[0], ads[1]] * 3)[:8])):
        go(vs, 8)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as p:
            go(vs, STEPS)
        ev = p.key_averages()
        tot = sum(e.device_time_total for e in ev)
        top = sorted(ev, key=lambda e: -e.device_time_total)[:12]
        out[label] = {"cuda_ms_per_step": round(tot / 1000 / STEPS, 3),
                      "top": [[round(e.device_time_total / 1000 / STEPS, 3), e.count // STEPS, e.key[:110]] for e in top]}
        print("==", label, "cuda ms per step", out[label]["cuda_ms_per_step"])
        for row in out[label]["top"]:
            print(*row)
    eng.close()
    if len(sys.argv) > 3:
        Path(sys.argv[3]).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
