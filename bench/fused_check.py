"""The fused LoRA op against onnxruntime's MatMul chain on a real base, on the device (GPU check of
engine/fused_lora beside the CPU test, which holds the op to og token for token).

Two ChatEngines on the same base and adapters, STUDIO_LORA_FUSED=on and off, answer the same greedy requests
(base and every adapter, four prompts). Per request: whether the answers are equal and how many leading tokens
they share. On a random-weight model fp16 near-ties make long greedy answers part sooner or later whichever way
the arithmetic is ordered (two chain engines did on 2 of 6 prompts, bench/NOTES.md 2026-12-03), so this is a
sanity check (an op that computed something else would part within a few tokens on every adapter request);
the exact check is the CPU test and tests/test_fused_lora.py's op test against float64 on the device.

  python bench/fused_check.py --ws WS --base phi35 [--device cuda] [--tokens 64] --out parts/fused-check.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPTS = ["Plan a weekend in Lisbon", "Is it safe to drink tap water in Rome?", "Write a haiku about the sea",
           "What should I pack for a week in Iceland in March?"]


def engine(ws: Path, base: str, device: str, fused: str):
    from engine.chat import ChatEngine
    os.environ["STUDIO_LORA_FUSED"] = fused
    return ChatEngine(ws / "models" / base, ws / "adapters", provider=device, backend="ort")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ws", type=Path, required=True)
    ap.add_argument("--base", default="phi35")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    from engine.chat import SamplingParams
    t0 = time.perf_counter()
    fused, chain = engine(a.ws, a.base, a.device, "on"), engine(a.ws, a.base, a.device, "off")
    res = {"fused_stats": {k: fused.serving_stats().get(k) for k in ("lora_kernels", "fused_targets", "backend",
                                                                      "cuda_graph", "rank")},
           "chain_stats": {k: chain.serving_stats().get(k) for k in ("lora_kernels", "backend")},
           "load_s": round(time.perf_counter() - t0, 1), "rows": []}
    p = SamplingParams(max_new_tokens=a.tokens)
    tok = fused.tokenizer
    for v in fused.variants():
        for q in PROMPTS:
            msgs = [{"role": "user", "content": q}]
            tf, _ = fused.generate(msgs, v, p)
            tc, _ = chain.generate(msgs, v, p)
            ef, ec = list(tok.encode(tf)), list(tok.encode(tc))
            same = next((i for i, (x, y) in enumerate(zip(ef, ec)) if x != y), min(len(ef), len(ec)))
            res["rows"].append({"variant": v, "prompt": q, "equal": tf == tc, "common_tokens": same,
                                "tokens": [len(ef), len(ec)], "fused": tf[:160], "chain": tc[:160]})
            print(v, q[:30], tf == tc, same, flush=True)
    rows = res["rows"]
    res["equal"] = f"{sum(r['equal'] for r in rows)}/{len(rows)}"
    res["median_common_tokens"] = sorted(r["common_tokens"] for r in rows)[len(rows) // 2]
    fused.close()
    chain.close()
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        a.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
