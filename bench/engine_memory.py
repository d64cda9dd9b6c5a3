"""Does the chat engine itself hold memory across requests? 8 threads, base and both adapters, 16 new
tokens each, RSS after every 800 requests (CPU, default model).

  python bench/engine_memory.py [--rounds 6] [--out bench/results/engine-memory-<date>.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.chat import ChatEngine, SamplingParams  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--out", default=str(ROOT / "bench/results" / f"engine-memory-{time.strftime('%Y-%m-%d')}.json"))
    a = ap.parse_args()
    eng = ChatEngine(ROOT / "models/default", ROOT / "adapters", provider="cpu")
    proc, params, variants = psutil.Process(), SamplingParams(max_new_tokens=16), eng.variants()

    def work(k: int) -> None:
        for i in range(100):
            eng.refresh()
            eng.generate([{"role": "user", "content": f"Question {i} {k}: what is a cat?"}],
                         variants[(i + k) % len(variants)], params)

    rows = [{"requests": 0, "rss_mb": round(proc.memory_info().rss / 1e6, 1)}]
    for r in range(a.rounds):
        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        rows.append({"requests": 800 * (r + 1), "rss_mb": round(proc.memory_info().rss / 1e6, 1)})
        print(rows[-1], flush=True)
    Path(a.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": "CPU, 2 cores",
                                       "variants": variants, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
