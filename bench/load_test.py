"""Load test of the launched app (python app.py) on the default model, CPU: N concurrent gradio_client
clients spread over the base and the adapters for T seconds. Greedy decoding, so every answer must equal
the answer to the same request computed alone beforehand (0 errors, 0 answers from the wrong variant).
On CUDA a batch of several rows rounds in fp16 slightly differently from a batch of one, and on the CPU a prompt
is read in pieces sized by time (so under load in other pieces than alone); either can flip a greedy near-tie: an answer that differs is counted as such a flip only where the reference's own logits, at
the first token where the two answers part, hold both tokens within NEAR_TIE of each other (computed by the
onnxruntime-genai backend with the request's adapter); any other difference counts as a wrong answer.
The app process's RSS (with its children) is sampled every second.

  python bench/load_test.py [--clients 32] [--seconds 120] [--out bench/results/load-<date>.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import psutil  # noqa: E402

PROMPTS = ["Where should I go in spring?", "What should I pack for a weekend in Lisbon?",
           "Is it safe to drink tap water in Rome?", "Hello, who are you?"]
MAX_NEW = 16
# logits this close are a near-tie: fp16 batch rounding on CUDA moves logits by a few hundredths. Measured on
# the shipped travel adapter, "Is it safe to drink tap water in Rome?": ' The' 12.684, ' For' 12.661 (CPU,
# fp32), which a batch on an H100 flipped (2026-12-07). A wrong variant parts at the voice's first token, by
# several logits.
NEAR_TIE = 0.1


def make_ws(root: Path, adapters: list[str]) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "adapters").mkdir()
    shutil.copytree(ROOT / "models" / "default", root / "models" / "default")
    for a in adapters:
        shutil.copytree(ROOT / "adapters" / a, root / "adapters" / a)
    os.symlink(ROOT / "models" / "default-hf", root / "models" / "default-hf")
    os.symlink(ROOT / "data", root / "data")
    return root


def ask(client, prompt: str, variant: str) -> str:
    hist, _, _, stats = client.predict(prompt, [], [], "default", variant, "base", False,
                                       0.0, 1.0, 0, MAX_NEW, 1.0, 0, api_name="/chat")
    if not hist or hist[-1]["role"] != "assistant":
        raise RuntimeError(f"no answer: {stats}")
    c = hist[-1]["content"]
    return c if isinstance(c, str) else json.dumps(c)


def answer_text(ans: str) -> str:
    """The text of an answer as ask() returns it (a string, or the JSON of Gradio's content parts)."""
    try:
        parts = json.loads(ans)
    except ValueError:
        return ans
    if isinstance(parts, list):
        return "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
    return ans if not isinstance(parts, str) else parts


def parting(engine, prompt: str, variant: str, ref: str, got: str) -> dict:
    """Where two answers to one request part, and the request's own logits there: the two tokens' logits
    and the top logit, from the onnxruntime-genai backend of `engine` (greedy, alone)."""
    import numpy as np
    import onnxruntime_genai as og
    msgs = [{"role": "user", "content": prompt}]
    ids, _ = engine.encode(msgs, MAX_NEW)
    rendered = engine.render(msgs)

    def tokens(text: str) -> list[int]:
        full = [int(x) for x in engine.tokenizer.encode(rendered + answer_text(text))]
        if full[:len(ids)] != ids:
            raise ValueError("the answer does not encode after the prompt")
        return full[len(ids):]
    a, b = tokens(ref), tokens(got)
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    if k == min(len(a), len(b)):  # one is a prefix of the other: an end token against a next token
        return {"at": k, "margin": None}
    held = engine.registry.acquire(variant)
    try:
        gp = og.GeneratorParams(engine.backend.model)
        gp.set_search_options(max_length=len(ids) + k + 1, do_sample=False)
        gen = og.Generator(engine.backend.model, gp)
        if held is not None:
            gen.set_active_adapter(engine.backend.adapters, held.key)
        gen.append_tokens(ids + a[:k])
        z = np.asarray(gen.get_output("logits"), dtype=np.float32)[0][-1]
        del gen
    finally:
        engine.registry.release(held)
    return {"at": k, "ref_token": a[k], "got_token": b[k], "ref_logit": round(float(z[a[k]]), 4),
            "got_logit": round(float(z[b[k]]), 4), "top_logit": round(float(z.max()), 4),
            "margin": round(abs(float(z[a[k]] - z[b[k]])), 4)}


def split_flips(model_dir: Path, adapters_dir: Path, wrong: list[dict]) -> tuple[list[dict], list[dict]]:
    """The differing answers split into near-tie flips and wrong answers (see NEAR_TIE)."""
    if not wrong:
        return [], []
    from engine.chat import ChatEngine
    engine = ChatEngine(model_dir, adapters_dir, backend="og")
    flips, bad = [], []
    try:
        seen: dict[tuple, dict] = {}
        for w in wrong:
            key = (w["request"], w["got"])
            if key not in seen:
                seen[key] = parting(engine, *w["request"], w["expected"], w["got"])
            where = dict(w, parting=seen[key])
            m = seen[key]["margin"]
            (flips if m is not None and m <= NEAR_TIE else bad).append(where)
    finally:
        engine.close()
    return flips, bad


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))
    return xs[k]


def rss_tree(proc: psutil.Process) -> int:
    total = 0
    for p in [proc] + proc.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run(clients: int = 32, seconds: float = 120, window_s: float = 30, out: str = "") -> dict:
    from gradio_client import Client
    from app_helpers import free_port, start_app, stop_app
    adapters = [a for a in ("travel", "pirate") if (ROOT / "adapters" / a / "metadata.json").exists()]
    variants = ["base"] + adapters
    tmp = Path(tempfile.mkdtemp(prefix="load-"))
    ws = make_ws(tmp / "ws", adapters)
    port = free_port()
    proc = start_app(ws, port, tmp / "app.log")
    url = f"http://127.0.0.1:{port}/"
    try:
        c0 = Client(url, verbose=False)
        requests = [(p, v) for p in PROMPTS for v in variants]
        t0 = time.time()
        ref = {rq: ask(c0, *rq) for rq in requests}  # each alone, before the load
        ref_s = time.time() - t0
        distinct = len(set(ref.values()))
        app_proc = psutil.Process(proc.pid)
        samples: list[tuple[float, int]] = []
        stop = threading.Event()

        def sampler():
            while not stop.is_set():
                samples.append((time.time(), rss_tree(app_proc)))
                stop.wait(1.0)
        lat, errors, wrong, per_variant = [], [], [], {v: 0 for v in variants}
        lock = threading.Lock()
        conns = [Client(url, verbose=False) for _ in range(clients)]
        start = threading.Barrier(clients + 1)
        deadline = [0.0]

        def worker(i: int):
            c = conns[i]
            k = i
            start.wait()
            while time.time() < deadline[0]:
                rq = requests[k % len(requests)]
                k += clients
                t = time.perf_counter()
                try:
                    ans = ask(c, *rq)
                except Exception as e:
                    with lock:
                        errors.append(f"{type(e).__name__}: {str(e)[:200]}")
                    continue
                dt = time.perf_counter() - t
                with lock:
                    lat.append(dt)
                    per_variant[rq[1]] += 1
                    if ans != ref[rq]:
                        wrong.append({"request": rq, "got": ans, "expected": ref[rq]})
        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        samp = threading.Thread(target=sampler, daemon=True)
        samp.start()
        t_start = time.time()
        deadline[0] = t_start + seconds
        start.wait()
        for t in threads:
            t.join(seconds + 300)
        wall = time.time() - t_start
        stop.set()
        samp.join()
        flips, bad = split_flips(ws / "models" / "default", ws / "adapters", wrong)
        rss = [r for _, r in samples]
        ts = [t for t, _ in samples]
        first = [r for t, r in samples if t - ts[0] <= window_s]
        last = [r for t, r in samples if ts[-1] - t <= window_s]
        res = {
            "clients": clients, "seconds": seconds, "wall_s": round(wall, 1), "variants": variants,
            "prompts": len(PROMPTS), "max_new_tokens": MAX_NEW, "reference_s": round(ref_s, 1),
            "distinct_reference_answers": distinct, "requests_served": len(lat),
            "requests_per_s": round(len(lat) / wall, 2), "per_variant": per_variant,
            "errors": len(errors), "error_examples": errors[:5], "differing_answers": len(wrong),
            "near_tie_flips": len(flips), "near_tie_examples": flips[:5], "wrong_variant_answers": len(bad),
            "wrong_examples": bad[:5],
            "latency_s": {"p50": round(pct(lat, 50), 3), "p90": round(pct(lat, 90), 3),
                          "p99": round(pct(lat, 99), 3), "max": round(max(lat), 3) if lat else None},
            "rss_mb": {"start": round(rss[0] / 1e6, 1), "peak": round(max(rss) / 1e6, 1),
                       "first_window_mean": round(statistics.mean(first) / 1e6, 1),
                       "last_window_mean": round(statistics.mean(last) / 1e6, 1),
                       "growth_first_to_last_window": round((statistics.mean(last) - statistics.mean(first)) / 1e6, 1),
                       "window_s": window_s, "samples": len(rss)},
            "cpus": os.cpu_count(),
        }
        # the app still answers afterwards
        res["after_ok"] = ask(c0, PROMPTS[0], variants[-1]) == ref[(PROMPTS[0], variants[-1])]
    finally:
        stop_app(proc, ws)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(res, indent=2))
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--window", type=float, default=30)
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    print(json.dumps(run(a.clients, a.seconds, a.window, a.out), indent=2))


if __name__ == "__main__":
    main()
