"""How long one request's prompt reading holds up the rest of the server on the CPU (onnxruntime-genai holds
Python's interpreter lock for each call): the longest gap of a 1 ms ticker thread while 1, 2 and 4 streams read a
long prompt, and the request time, for the prompt read at once (STUDIO_PREFILL_CHUNK=0), in fixed pieces of 128
tokens, and in pieces sized by time (auto, STUDIO_PREFILL_MS). Same tokens in every case (checked).

    python bench/prefill_stall.py [--model models/default] [--out bench/results/prefill-stall-cpu-<date>.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(model: str, adapters: str, chunk: str, streams: int, repeats: int) -> dict:
    os.environ["STUDIO_PREFILL_CHUNK"] = chunk
    from engine.chat import ChatEngine, SamplingParams
    eng = ChatEngine(model, adapters, provider="cpu")
    msg = [{"role": "user", "content": " ".join(["the city of lisbon is known for hills trams tiles and food"] * 120)}]
    p = SamplingParams(max_new_tokens=8)
    want = eng.generate(msg, "travel", p)[0]  # (also warms the model and the rate of the pieces)
    gaps, stop = [], threading.Event()

    def tick():
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
    outs, times = [], []

    def one():
        for _ in range(repeats):
            t = time.perf_counter()
            text, st = eng.generate(msg, "travel", p)
            times.append(time.perf_counter() - t)
            outs.append(text)
    ticker = threading.Thread(target=tick)
    ticker.start()
    workers = [threading.Thread(target=one) for _ in range(streams)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    stop.set()
    ticker.join()
    prompt = len(eng.encode(msg, p.max_new_tokens)[0])
    eng.close()
    gaps.sort()
    return {"chunk": chunk, "streams": streams, "prompt_tokens": prompt, "requests": len(times),
            "max_stall_ms": round(1000 * gaps[-1], 1), "p99_stall_ms": round(1000 * gaps[int(0.99 * len(gaps))], 1),
            "median_request_ms": round(1000 * sorted(times)[len(times) // 2], 1), "wall_s": round(wall, 2),
            "same_tokens": all(o == want for o in outs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "default"))
    ap.add_argument("--adapters", default=str(ROOT / "adapters"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / f"prefill-stall-cpu-{date.today()}.json"))
    a = ap.parse_args()
    import onnxruntime_genai as og
    rows = [measure(a.model, a.adapters, chunk, streams, a.repeats)
            for chunk in ("0", "128", "auto") for streams in (1, 2, 4)]
    for r in rows:
        print(json.dumps(r))
    res = {"date": str(date.today()), "device": f"CPU, {os.cpu_count()} cores ({platform.processor() or platform.machine()})",
           "model": Path(a.model).name, "onnxruntime_genai": og.__version__, "rows": rows}
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print("wrote", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
