"""The app's chat engine on the GPU, on a base and two adapters built by the pipeline itself (fused q/k/v
LoRA slots): decode tokens/s per variant with and without CUDA graph, adapter switch, 8 concurrent
requests with mixed variants (each greedy answer must equal the same request run alone), compare mode.

  python bench/engine_gpu.py --model /tmp/b/hf --ws /tmp/eng-ws --out results.json
"""
from __future__ import annotations

import argparse
import json
import statistics as st
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common as C  # noqa: E402


def build(ws: Path, model: Path, name: str, data: str, steps: int, ep: str) -> None:
    args = ["--base_model", str(model), "--base_name", "gpu-base", "--adapter_name", name,
            "--train_file", f"data/{data}/train.jsonl", "--eval_file", f"data/{data}/test.jsonl",
            "--awq.enabled", "false", "--lora.max_steps", str(steps), "--onnx.execution_provider", ep]
    p, secs = C.pipeline_build(ws, args)
    print(p.stdout[-1500:], p.stderr[-1500:], f"[{secs:.0f} s]", flush=True)
    if p.returncode != 0:
        raise SystemExit(f"build {name} failed")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--ws", type=Path, default=Path("/tmp/eng-ws"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--provider", default="cuda", help="cpu: a smoke run of this script without a GPU")
    a = ap.parse_args()
    if not (a.ws / "models" / "gpu-base" / "base.json").exists():
        build(a.ws, a.model, "a1", "travel", a.steps, a.provider)
        build(a.ws, a.model, "a2", "pirate", a.steps, a.provider)
    from engine.chat import ChatEngine, SamplingParams
    res = {"info": C.device_info(a.provider), "date": time.strftime("%Y-%m-%d"), "tokens": a.tokens, "runs": {}}
    base_json = json.loads((a.ws / "models/gpu-base/base.json").read_text())
    res["base"] = {k: base_json.get(k) for k in ("lora_layout", "precision", "block_size", "execution_provider")}
    msgs = [{"role": "user", "content": "Tell me about the sea and the ships that sail on it."}]
    greedy = SamplingParams(temperature=0, max_new_tokens=a.tokens)
    for graph in ((False, True) if a.provider == "cuda" else (False,)):
        eng = ChatEngine(a.ws / "models/gpu-base", a.ws / "adapters", provider=a.provider, cuda_graph=graph)
        r = {"provider": eng.provider, "variants": eng.variants(), "refused": eng.refused()}
        for v in eng.variants():
            eng.generate(msgs, v, greedy)  # warm-up
            tps = []
            for _ in range(3):
                _, s = eng.generate(msgs, v, greedy)
                tps.append(s.tokens_per_s)
            r[f"tok_s {v}"] = round(st.median(tps), 1)
            r[f"tokens {v}"] = s.tokens
        # switch: first-token latency when alternating variants vs the same variant
        one = SamplingParams(temperature=0, max_new_tokens=1)
        t_same, t_alt = [], []
        for i in range(20):
            t0 = time.perf_counter(); eng.generate(msgs, "a1", one); t_same.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); eng.generate(msgs, ["a1", "a2", "base"][i % 3], one)
            t_alt.append(time.perf_counter() - t0)
        r["one_token_request_ms same/alternating"] = [round(1000 * st.median(t_same), 2),
                                                      round(1000 * st.median(t_alt), 2)]
        # concurrency: 8 threads, mixed variants, answers equal to the same request alone
        prompts = [[{"role": "user", "content": f"Question {i}: what is a {w}?"}]
                   for i, w in enumerate(["ship", "harbor", "city", "river", "bridge", "map", "train", "boat"])]
        short = SamplingParams(temperature=0, max_new_tokens=64)
        jobs = [(p, ["base", "a1", "a2"][i % 3]) for i, p in enumerate(prompts)]
        alone = [eng.generate(p, v, short)[0] for p, v in jobs]
        got = [None] * len(jobs)

        def worker(i):
            got[i] = eng.generate(jobs[i][0], jobs[i][1], short)[0]

        t0 = time.perf_counter()
        ths = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
        [t.start() for t in ths]
        [t.join() for t in ths]
        r["concurrent_8_s"] = round(time.perf_counter() - t0, 2)
        r["concurrent_equal_to_alone"] = sum(g == x for g, x in zip(got, alone))
        # compare: time to both answers vs one
        t0 = time.perf_counter(); eng.generate(msgs, "a1", greedy); one_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in eng.compare(msgs, "base", "a1", greedy):
            pass
        both_s = time.perf_counter() - t0
        r["compare_over_one"] = round(both_s / one_s, 2)
        res["runs"][f"cuda_graph={graph}"] = r
        print(json.dumps(r, indent=1), flush=True)
        a.out.write_text(json.dumps(res, indent=2))
        del eng
    return 0


if __name__ == "__main__":
    sys.exit(main())
