"""Serving figures of one pipeline-built base and its adapters, as the app serves them: decode tokens/s
(batch 1, 16-token prompt, exactly N new tokens, greedy) and time to first token for a 1024-token prompt,
base and adapter, CUDA graph off/on; adapter switch; memory per extra loaded adapter; compare mode
(one batch of 2 with a pair adapter vs two interleaved generators vs one answer), through the app's
own ChatEngine. Medians of --reps after a warm-up.

  python bench/serve_gpu.py --ws /tmp/pipe-ws --base phi35-int4 --out serve.json
  python bench/serve_gpu.py --ws . --base default --device cpu --tokens 32 --reps 1 --out /tmp/s.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics as st
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common as C  # noqa: E402


def _adapters_of(ws: Path, base_dir: Path) -> list[Path]:
    """The adapter folders in ws/adapters that fit the base (the engine library's own check)."""
    from artifacts import list_adapters
    return [i.dir for i in list_adapters(ws / "adapters", base_dir) if i.ok]


def og_rows(d: Path, ads: list[Path], device: str, tokens: int, reps: int, long_n: int) -> list[dict]:
    import onnxruntime_genai as og
    rows = []
    prompt, long_prompt = C.bench_prompts(d, long_n)
    for graph in ((False, True) if device == "cuda" else (False,)):
        model = C.og_model(d, device, graph)
        adapters = og.Adapters(model)
        adapters.load(str(ads[0] / "adapter.onnx_adapter"), "a")
        for name in (None, "a"):
            def once(p, n):
                return C.og_timed_request(model, p, n, adapters, name)
            once(prompt, 32)
            once(long_prompt, 1)
            dec = [once(prompt, tokens) for _ in range(reps)]
            ttft = [once(long_prompt, 1)[0] for _ in range(reps)]
            row = {"cuda_graph": graph, "adapter": name or "-", "decode_tok_s": round(st.median(x[1] for x in dec), 1),
                   "spread_tok_s": [round(x[1], 1) for x in dec], "tokens": dec[0][2],
                   "ttft16_ms": round(1000 * st.median(x[0] for x in dec), 2),
                   f"ttft{long_n}_ms": round(1000 * st.median(ttft), 2)}
            rows.append(row)
            print(row, flush=True)
        adapters = model = None
    return rows


def switch_and_memory(d: Path, ads: list[Path], device: str, reps: int, copies: int) -> dict:
    """og level: first-token latency of a request with the same adapter as the last one vs another
    one (no reload: both loaded), the set_active_adapter call alone, and device memory per extra
    loaded adapter (the adapter file loaded `copies` times under new names)."""
    import onnxruntime_genai as og
    model = C.og_model(d, device, device == "cuda")
    adapters = og.Adapters(model)
    names = []
    for i, p in enumerate(ads[:2]):
        adapters.load(str(p / "adapter.onnx_adapter"), f"s{i}")
        names.append(f"s{i}")
    if len(names) == 1:
        names.append(None)
    prompt = list(range(100, 116))

    def first_token(name):
        t0 = time.perf_counter()
        gen = C.og_generator(model, prompt, 2, adapters, name)
        gen.generate_next_token()
        dt = time.perf_counter() - t0
        del gen
        return dt
    for n in names * 3:
        first_token(n)
    same = [first_token(names[0]) for _ in range(reps * 5)]
    alt = [first_token(names[k % 2]) for k in range(reps * 10)]
    calls = []
    for k in range(reps * 10):
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=32)
        gen = og.Generator(model, params)
        t0 = time.perf_counter()
        gen.set_active_adapter(adapters, names[0] or "s0")
        calls.append(time.perf_counter() - t0)
        del gen
    res = {"first_token_same_adapter_ms": round(1000 * st.median(same), 3),
           "first_token_alternating_ms": round(1000 * st.median(alt), 3),
           "switch_cost_ms": round(1000 * (st.median(alt) - st.median(same)), 3),
           "set_active_adapter_ms": round(1000 * st.median(calls), 4)}
    # memory: NVML (device) or RSS (CPU) before/after loading extra copies, then after one use each
    f = ads[0] / "adapter.onnx_adapter"
    meas = C.gpu_used_mib if device == "cuda" else C.rss_mib
    m0 = meas()
    for i in range(copies):
        adapters.load(str(f), f"copy{i}")
    m1 = meas()
    for i in range(copies):
        first_token(f"copy{i}")
    m2 = meas()
    model_bytes = C.weight_bytes(d)
    res["memory"] = {"unit": "MiB (NVML used)" if device == "cuda" else "MiB (process RSS)", "copies": copies,
                     "before": m0, "after_load": m1, "after_use": m2,
                     "per_adapter_mib": round((m2 - m0) / copies, 2) if m0 is not None and m2 is not None else None,
                     "adapter_file_mib": round(f.stat().st_size / 2**20, 2),
                     "model_weights_mib": round(model_bytes / 2**20, 1),
                     "file_share_of_model_pct": round(100 * f.stat().st_size / model_bytes, 3)}
    print(res, flush=True)
    adapters = model = None
    return res


def og_compare(d: Path, ads: list[Path], device: str, tokens: int, reps: int) -> list[dict]:
    """The compare-scheduling lever at the og level, exactly `tokens` new tokens per answer (random-
    weight models stop at EOS at random places otherwise): one answer; two generators stepped in turn
    (interleaved); one batch of 2 with a stacked pair adapter (the rows layout). CUDA graph off/on."""
    import tempfile

    import onnxruntime_genai as og

    from artifacts import write_pair_adapter
    prompt = list(range(100, 116))
    tmp = Path(tempfile.mkdtemp(prefix="pair-"))
    fa, fb = ads[0] / "adapter.onnx_adapter", (ads[1] if len(ads) > 1 else ads[0]) / "adapter.onnx_adapter"
    write_pair_adapter(fa, fb, tmp / "pair.onnx_adapter")
    rows = []
    for graph in ((False, True) if device == "cuda" else (False,)):
        model = C.og_model(d, device, graph)
        adapters = og.Adapters(model)
        adapters.load(str(fa), "a")
        adapters.load(str(fb), "b")
        adapters.load(str(tmp / "pair.onnx_adapter"), "pair")

        def one():
            g = C.og_generator(model, prompt, tokens, adapters, "a")
            C.decode_rest(g)

        def interleaved():
            gens = [C.og_generator(model, prompt, tokens, adapters, n) for n in ("a", "b")]
            while not all(g.is_done() for g in gens):
                for g in gens:
                    if not g.is_done():
                        g.generate_next_token()

        def batched():
            g = C.og_generator(model, prompt, tokens, adapters, "pair", batch=2)
            C.decode_rest(g)
        row = {"cuda_graph": graph, "tokens": tokens}
        for name, fn in (("one_answer", one), ("interleaved", interleaved), ("batch2_pair", batched)):
            try:
                fn()
                row[f"{name}_s"] = round(st.median(C.time_reps(fn, reps)), 4)
            except Exception as e:  # noqa: BLE001 - e.g. an EP that refuses a batch of 2 here
                row[f"{name}_error"] = f"{type(e).__name__}: {str(e)[:300]}"
        for name in ("interleaved", "batch2_pair"):
            if f"{name}_s" in row and "one_answer_s" in row:
                row[f"{name}_over_one"] = round(row[f"{name}_s"] / row["one_answer_s"], 3)
        rows.append(row)
        print(row, flush=True)
        adapters = model = None
    shutil.rmtree(tmp, ignore_errors=True)
    return rows


def compare_rows(ws: Path, base: str, ads: list[Path], device: str, tokens: int, reps: int) -> dict:
    """Through ChatEngine on the onnxruntime-genai backend (the ort backend's figures: bench/serving.py):
    one answer, then compare of two variants both ways."""
    from engine.chat import ChatEngine, SamplingParams
    msgs = [{"role": "user", "content": "Tell me about the sea and the ships that sail on it."}]
    p = SamplingParams(temperature=0, max_new_tokens=tokens)
    res = {}
    va = ads[0].name
    vb = ads[1].name if len(ads) > 1 else "base"
    for mode in ("batch", "interleave"):
        os.environ["STUDIO_COMPARE"] = mode
        eng = ChatEngine(ws / "models" / base, ws / "adapters", provider=device, backend="og")
        if va not in eng.variants():
            raise SystemExit(f"{va} not served: {eng.refused()}")
        r = {"batched": eng.compare_batched, "note": eng.compare_note}

        def timed(fn):
            t0 = time.perf_counter()
            out = fn()
            return time.perf_counter() - t0, out
        singles = {v: eng.generate(msgs, v, p) for v in ("base", va, vb)}  # warm-up + references
        for pair in ((va, vb), ("base", va)):
            list(eng.compare(msgs, *pair, p))  # warm-up (builds the pair adapter)
            one = [timed(lambda: eng.generate(msgs, pair[1], p))[0] for _ in range(reps)]
            both = [timed(lambda: list(eng.compare(msgs, *pair, p)))[0] for _ in range(reps)]
            _, frames = timed(lambda: list(eng.compare(msgs, *pair, p)))
            ta, tb, sa, sb = frames[-1]
            ra, rb = singles[pair[0]][0], singles[pair[1]][0]

            def common(x, y):
                k = 0
                while k < min(len(x), len(y)) and x[k] == y[k]:
                    k += 1
                return k
            key = f"{pair[0]} vs {pair[1]}"
            r[key] = {"one_answer_s": round(st.median(one), 3), "both_answers_s": round(st.median(both), 3),
                      "ratio": round(st.median(both) / st.median(one), 3),
                      "tokens": [sa.tokens, sb.tokens], "single_tokens": singles[pair[1]][1].tokens,
                      "equal_to_single": [ta == ra, tb == rb],
                      "common_prefix_chars": [common(ta, ra), common(tb, rb)], "chars": [len(ra), len(rb)]}
            print(mode, key, r[key], flush=True)
        res[mode] = r
        eng.close()
        eng = None
    os.environ.pop("STUDIO_COMPARE", None)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ws", type=Path, required=True, help="workspace (STUDIO_HOME) with models/ and adapters/")
    ap.add_argument("--base", required=True, help="base name under models/")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--long", type=int, default=1024, help="prompt tokens for the long time-to-first-token row")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--copies", type=int, default=8, help="extra adapter copies for the memory figure")
    ap.add_argument("--parts", default="rows,switch,og_compare,compare")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    d = a.ws / "models" / a.base
    meta = json.loads((d / "base.json").read_text())
    ads = _adapters_of(a.ws, d)
    if not ads:
        raise SystemExit(f"no adapters for base {a.base} in {a.ws / 'adapters'}")
    res = {"info": C.device_info(a.device), "date": time.strftime("%Y-%m-%d"), "base": a.base,
           "base_meta": {k: meta.get(k) for k in ("lora_layout", "lora_rows", "precision", "block_size",
                                                  "accuracy_level", "execution_provider")},
           "adapters": [p.name for p in ads], "tokens": a.tokens, "reps": a.reps}
    parts = a.parts.split(",")
    for part, fn in (("rows", lambda: og_rows(d, ads, a.device, a.tokens, a.reps, a.long)),
                     ("switch", lambda: switch_and_memory(d, ads, a.device, a.reps, a.copies)),
                     ("og_compare", lambda: og_compare(d, ads, a.device, a.tokens, a.reps)),
                     ("compare", lambda: compare_rows(a.ws, a.base, ads, a.device, a.tokens, a.reps))):
        if part not in parts:
            continue
        try:
            res[part] = fn()
        except Exception as e:  # noqa: BLE001 - one failed part must not lose the others
            import traceback
            traceback.print_exc()
            res[part] = {"error": f"{type(e).__name__}: {e}"}
        C.write_json(a.out, res)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
