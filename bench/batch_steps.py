"""Where the time of a batch goes: n requests (base and adapters mixed) submitted straight to the ort
backend at once, no consumer threads (tokens read after the last one), against the same n through
ChatEngine.generate in n threads (what the harness's `users` figure does). Per batch size: aggregate
tokens/s and the backend's per-step counters (graph replay, host preparation, argmax + copy back, emit).
The difference between the two columns is what the Python consumers cost the decode loop (the GIL).

    python bench/batch_steps.py WS BASE OUT.json [cuda|cpu] [TOKENS]
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common as C  # noqa: E402
from engine.chat import ChatEngine, SamplingParams  # noqa: E402

STEP_KEYS = ("steps", "rows_stepped", "step_prep_s", "step_run_s", "step_pick_s", "step_emit_s")


def _delta(before: dict, after: dict) -> dict:
    d = {k: after[k] - before[k] for k in STEP_KEYS}
    s = max(d["steps"], 1)
    return {"steps": d["steps"], "rows_per_step": round(d["rows_stepped"] / s, 2),
            **{k.replace("_s", "_ms_per_step"): round(1000 * d[k] / s, 3) for k in STEP_KEYS[2:]}}


def direct(eng, variants, ids, n_tok) -> dict:
    st0 = dict(eng.backend.stats())
    reqs, wall = C.run_rows(eng, variants, ids, n_tok)
    toks = 0
    for r in reqs:
        while r.out.get()[0] is not None:
            toks += 1
    return {"tokens": toks, "wall_s": round(wall, 3), "aggregate_tok_s": round(toks / wall, 1),
            **_delta(st0, eng.backend.stats())}


def threaded(eng, variants, msgs, n_tok) -> dict:
    b = eng.backend
    res = [None] * len(variants)

    def user(i):
        res[i] = eng.generate(msgs, variants[i], SamplingParams(max_new_tokens=n_tok))[1].tokens
    st0 = dict(b.stats())
    t0 = time.perf_counter()
    th = [threading.Thread(target=user, args=(i,)) for i in range(len(variants))]
    for t in th:
        t.start()
    for t in th:
        t.join()
    wall = time.perf_counter() - t0
    return {"tokens": sum(res), "wall_s": round(wall, 3), "aggregate_tok_s": round(sum(res) / wall, 1),
            **_delta(st0, b.stats())}


def main() -> None:
    ws, base, dest = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    provider = sys.argv[4] if len(sys.argv) > 4 else "cuda"
    n_tok = int(sys.argv[5]) if len(sys.argv) > 5 else 256
    eng = ChatEngine(ws / "models" / base, ws / "adapters", provider=provider)
    assert eng.backend_name == "ort", eng.backend_why
    ads = sorted(v for v in eng.variants() if v != "base")
    msgs = [{"role": "user", "content": "Plan a three-day trip to Lisbon with a budget, and say what to pack."}]
    ids, _ = eng.encode(msgs, 1)
    out = {"tokens": n_tok, "backend_stats": None, "rows": {}}
    try:
        direct(eng, ["base", *ads[:2]], ids, 16)  # warm: every variant resident, graphs captured
        for n in (1, 2, 4, 8):
            for label, variants in (("base", ["base"] * n), ("mixed", (["base", *ads[:2]] * 3)[:n])):
                row = {"direct": direct(eng, variants, ids, n_tok), "threads": threaded(eng, variants, msgs, n_tok)}
                out["rows"][f"{label}{n}"] = row
                print(label, n, json.dumps(row), flush=True)
        out["backend_stats"] = eng.serving_stats()
    finally:
        eng.close()
    dest.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
