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


def run_ids(e, ids: list[int], variant: str, limit: int, record: list | None = None) -> list[int]:
    """Greedy token ids of prompt `ids` under `variant` on e's ort backend (what ChatEngine.generate decodes to
    text); with `record`, the logits each token was picked from are appended to it."""
    import numpy as np

    import engine.ort_backend as ob
    from engine.chat import SamplingParams
    orig = ob.Sampler

    class Recorder(orig):
        def __call__(self, logits):
            record.append(np.array(logits, dtype=np.float32))
            return super().__call__(logits)
    if record is not None:
        ob.Sampler = Recorder
    held = e.registry.acquire(variant)
    out = []
    try:
        req = e.backend.submit(ob.Request(ids, held and held.key, held and held.info.path,
                                          SamplingParams(max_new_tokens=limit), 0, limit))
        while (tok := req.out.get()[0]) is not None:
            out.append(int(tok))
    finally:
        ob.Sampler = orig
        e.registry.release(held)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ws", type=Path, required=True)
    ap.add_argument("--base", default="phi35")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    t0 = time.perf_counter()
    fused, chain = engine(a.ws, a.base, a.device, "on"), engine(a.ws, a.base, a.device, "off")
    res = {"fused_stats": {k: fused.serving_stats().get(k) for k in ("lora_kernels", "fused_targets", "backend",
                                                                      "cuda_graph", "rank")},
           "chain_stats": {k: chain.serving_stats().get(k) for k in ("lora_kernels", "backend")},
           "load_s": round(time.perf_counter() - t0, 1), "rows": []}
    # Where two answers part, the logits each engine picked that token from (the same ids before it): a near-tie when
    # the chain's top-2 gap there is below the fused-vs-chain logit difference.
    res["partings"] = []
    for v in fused.variants():
        for q in PROMPTS:
            msgs = [{"role": "user", "content": q}]
            ids = fused.encode(msgs, a.tokens)[0]
            lf_all, lc_all = [], []
            ef, ec = run_ids(fused, ids, v, a.tokens, lf_all), run_ids(chain, ids, v, a.tokens, lc_all)
            same = next((i for i, (x, y) in enumerate(zip(ef, ec)) if x != y), min(len(ef), len(ec)))
            res["rows"].append({"variant": v, "prompt": q, "equal": ef == ec, "common_tokens": same,
                                "tokens": [len(ef), len(ec)], "fused": fused.tokenizer.decode(ef)[:160],
                                "chain": chain.tokenizer.decode(ec)[:160]})
            print(v, q[:30], ef == ec, same, flush=True)
            if ef != ec and same < min(len(lf_all), len(lc_all)):
                lf, lc = lf_all[same], lc_all[same]
                top_c = lc.argsort()[-2:][::-1]
                res["partings"].append({
                    "variant": v, "prompt": q[:40], "at_token": same, "top1_fused": int(lf.argmax()),
                    "top1_chain": int(top_c[0]), "chain_top2_gap": round(float(lc[top_c[0]] - lc[top_c[1]]), 4),
                    "fused_gap_same_pair": round(float(lf[top_c[0]] - lf[top_c[1]]), 4),
                    "max_abs_logit_diff": round(float(abs(lf - lc).max()), 4),
                    "max_abs_logit": round(float(abs(lc).max()), 2)})
                print("parting", res["partings"][-1], flush=True)
    rows = res["rows"]
    res["equal"] = f"{sum(r['equal'] for r in rows)}/{len(rows)}"
    res["median_common_tokens"] = sorted(r["common_tokens"] for r in rows)[len(rows) // 2]
    nt = [p for p in res["partings"] if p["chain_top2_gap"] <= p["max_abs_logit_diff"]]
    res["partings_near_tie"] = f"{len(nt)}/{len(res['partings'])}"
    fused.close()
    chain.close()
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        a.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
