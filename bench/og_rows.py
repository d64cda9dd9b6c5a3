"""Decode tokens/s of pipeline-built ONNX bases with onnxruntime-genai directly (exactly N new tokens,
greedy), base and each adapter, with and without CUDA graph, median of 3 after a warm-up.

  python bench/og_rows.py --ws /tmp/eng-ws --bases gpu-base,gpu-base-32 --out rows.json
"""
from __future__ import annotations

import argparse
import json
import statistics as st
import sys
import time
from pathlib import Path

import onnxruntime_genai as og

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import common as C  # noqa: E402


def decode(model, adapters, name, prompt, n):
    gen = C.og_generator(model, prompt, n, adapters, name)
    t0 = time.perf_counter()
    k = C.decode_rest(gen)
    return k / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ws", type=Path, required=True)
    ap.add_argument("--bases", required=True)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    res = {"info": C.device_info("cuda"), "date": time.strftime("%Y-%m-%d"), "rows": []}
    prompt = list(range(100, 116))
    for base in a.bases.split(","):
        d = a.ws / "models" / base
        meta = json.loads((d / "base.json").read_text())
        ads = [p for p in sorted((a.ws / "adapters").iterdir())
               if json.loads((p / "metadata.json").read_text())["base_fingerprint"] == meta["fingerprint"]]
        for graph in (False, True):
            model = C.og_model(d, "cuda", graph)
            adapters = og.Adapters(model)
            for p in ads:
                adapters.load(str(p / "adapter.onnx_adapter"), p.name)
            for name in [None] + [p.name for p in ads][:1]:
                decode(model, adapters, name, prompt, 32)
                tps = [decode(model, adapters, name, prompt, a.tokens) for _ in range(3)]
                row = {"base": base, "block_size": meta["block_size"], "accuracy_level": meta.get("accuracy_level"),
                       "layout": meta.get("lora_layout"), "cuda_graph": graph, "adapter": name or "-",
                       "tok_s": round(st.median(tps), 1), "spread": [round(x, 1) for x in tps]}
                res["rows"].append(row)
                print(row, flush=True)
            del adapters, model
    a.out.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
