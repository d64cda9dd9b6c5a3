"""The demo's acceptance, measured on what is served: the int4 ONNX base and its adapters through the chat
engine (onnxruntime-genai, greedy).

    python -m bench.demo [--models models] [--adapters adapters] [--n 10] [--json FILE] [--readme]

- readable: at least 90 % of an answer's words are in the corpus vocabulary (data/corpus/vocab.txt, the
  words of every text the project trains on, counted by data/make_data.py's `words`), and no token or
  word repeats 3 or more times in a row;
- voice: the dataset's markers (data/make_data.py: TRAVEL_MARKERS, PIRATE_MARKERS) in an answer;
- on the first 10 held-out prompts of data/travel/test.jsonl and data/pirate/test.jsonl (the acceptance; --n
  100 takes all of them, the wider measure to tune against), each answered by the base, travel and pirate.
--readme rewrites the demo table in README.md (between the `demo-table` markers) from the Chat tab's
example prompts (ui/chat_tab.py EXAMPLES).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import device_info  # noqa: E402

N_PROMPTS = 10
MAX_NEW_TOKENS = 128
VARIANTS = ("base", "travel", "pirate")
TABLE_BEGIN, TABLE_END = "<!-- demo-table:begin -->", "<!-- demo-table:end -->"


def make_data():
    """data/make_data.py as a module (standard library only; importing it writes nothing)."""
    spec = importlib.util.spec_from_file_location("make_data", REPO / "data" / "make_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MD = make_data()


def vocabulary() -> set[str]:
    return set((REPO / "data" / "corpus" / "vocab.txt").read_text(encoding="utf-8").split())


def heldout_prompts(dataset: str, n: int = N_PROMPTS) -> list[str]:
    lines = (REPO / "data" / dataset / "test.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["prompt"] for line in lines[:n]]


def longest_run(items: list) -> int:
    best = run = 0
    for i, x in enumerate(items):
        run = run + 1 if i and x == items[i - 1] else 1
        best = max(best, run)
    return best


def readability(text: str, token_ids: list[int], vocab: set[str]) -> dict:
    words = MD.words(text)
    known = sum(w in vocab for w in words)
    share = known / len(words) if words else 0.0
    run = max(longest_run(token_ids), longest_run(words))
    return {"words": len(words), "in_vocab": round(share, 4), "unknown": sorted({w for w in words if w not in vocab}),
            "longest_repeat": run, "readable": bool(words) and share >= 0.9 and run < 3}


def has_voice(text: str, dataset: str) -> bool:
    if dataset == "travel":
        return any(m in text for m in MD.TRAVEL_MARKERS)
    words = MD.words(text)
    joined = " " + " ".join(words) + " "
    return any(f" {m} " in joined for m in MD.PIRATE_MARKERS)


def answer(engine, prompt: str, variant: str) -> tuple[str, list[int], float, float]:
    from engine.chat import SamplingParams
    text, st = engine.generate([{"role": "user", "content": prompt}], variant,
                               SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW_TOKENS))
    ids = [int(t) for t in engine.tokenizer.encode(text)]
    return text.strip(), ids, st.ttft_s, st.tokens_per_s


def run(models: Path, adapters: Path, base: str = "default", n: int = N_PROMPTS) -> dict:
    from engine.chat import ChatEngine
    vocab = vocabulary()
    engine = ChatEngine(models / base, adapters, provider="cpu")
    try:
        missing = [v for v in VARIANTS[1:] if v not in engine.variants()]
        if missing:
            raise SystemExit(f"adapters {missing} missing or refused by {models / base}: {engine.refused()}")
        out = {"base": base, "provider": engine.provider, "prompts_per_dataset": n, "datasets": {}}
        for ds in ("travel", "pirate"):
            rows = []
            for p in heldout_prompts(ds, n):
                row = {"prompt": p}
                for v in VARIANTS:
                    text, ids, ttft, rate = answer(engine, p, v)
                    row[v] = {"text": text, "voice": has_voice(text, ds), "ttft_s": round(ttft, 4),
                              "decode_tok_s": round(rate, 1),
                              **readability(text, ids, vocab)}
                rows.append(row)
            out["datasets"][ds] = {
                "rows": rows,
                "voice": {v: sum(r[v]["voice"] for r in rows) for v in VARIANTS},
                "readable": {v: sum(r[v]["readable"] for r in rows) for v in VARIANTS},
            }
        every = [r[v] for d in out["datasets"].values() for r in d["rows"] for v in VARIANTS]
        out["speed"] = {"what": "CPU chat through the engine (in-process, greedy, the first request warms up)",
                        "median_ttft_ms": round(1000 * statistics.median(x["ttft_s"] for x in every), 1),
                        "max_ttft_ms": round(1000 * max(x["ttft_s"] for x in every), 1),
                        "median_decode_tok_s": round(statistics.median(x["decode_tok_s"] for x in every
                                                                       if x["decode_tok_s"] > 0), 1),
                        "cpus": os.cpu_count()}
        out["info"] = {**device_info("cpu"), "date": date.today().isoformat()}
        for name in VARIANTS[1:]:
            meta = json.loads((adapters / name / "metadata.json").read_text())
            out.setdefault("metadata_eval", {})[name] = {k: meta.get("eval", {}).get(k)
                                                         for k in ("n", "base_loss", "adapter_loss")}
        return out
    finally:
        engine.close()


def table(models: Path, adapters: Path, prompts: list[str], base: str = "default") -> str:
    """The README's side-by-side table: each prompt answered by base, travel and pirate (greedy)."""
    from engine.chat import ChatEngine
    engine = ChatEngine(models / base, adapters, provider="cpu")
    try:
        lines = ["| prompt | base | travel | pirate |", "|---|---|---|---|"]
        for p in prompts:
            cells = [answer(engine, p, v)[0].replace("|", "\\|").replace("\n", " ") for v in VARIANTS]
            lines.append(f"| {p} | " + " | ".join(cells) + " |")
        return "\n".join(lines)
    finally:
        engine.close()


def readme_table(readme: str) -> list[tuple[str, dict]]:
    """(prompt, {variant: answer}) rows of the demo table in README text."""
    m = re.search(re.escape(TABLE_BEGIN) + r"(.*?)" + re.escape(TABLE_END), readme, re.S)
    if not m:
        raise ValueError("README.md has no demo table")
    rows = []
    for line in m.group(1).strip().splitlines()[2:]:
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows.append((cells[0], dict(zip(VARIANTS, cells[1:]))))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=str(REPO / "models"))
    ap.add_argument("--adapters", default=str(REPO / "adapters"))
    ap.add_argument("--json", default=None, help="write the measurements here")
    ap.add_argument("--readme", action="store_true", help="rewrite README.md's demo table")
    ap.add_argument("--n", type=int, default=N_PROMPTS, help="held-out prompts per dataset (1-100)")
    ap.add_argument("--quiet", action="store_true", help="print only the failures and the counts")
    a = ap.parse_args(argv)
    if not 1 <= a.n <= 100:
        ap.error("--n must be between 1 and 100")
    models, adapters = Path(a.models), Path(a.adapters)
    if a.readme:
        from ui.chat_tab import EXAMPLES
        readme = REPO / "README.md"
        text = readme.read_text(encoding="utf-8")
        new = table(models, adapters, EXAMPLES)
        i, j = text.index(TABLE_BEGIN) + len(TABLE_BEGIN), text.index(TABLE_END)
        readme.write_text(text[:i] + "\n" + new + "\n" + text[j:], encoding="utf-8")
        print(new)
        return 0
    t0 = time.time()
    res = run(models, adapters, n=a.n)
    res["seconds"] = round(time.time() - t0, 1)
    for ds, d in res["datasets"].items():
        print(f"== {ds}: readable {d['readable']}  voice {d['voice']}")
        for r in d["rows"]:
            if a.quiet and all(r[v]["readable"] for v in VARIANTS):
                continue
            print(f"Q: {r['prompt']}")
            for v in VARIANTS:
                x = r[v]
                if a.quiet and x["readable"]:
                    continue
                flag = "" if x["readable"] else f"  [NOT READABLE: {x['in_vocab']:.0%} {x['unknown']} run {x['longest_repeat']}]"
                print(f"  {v:6s}{'*' if x['voice'] else ' '} {x['text']}{flag}")
    print("metadata eval:", res.get("metadata_eval"))
    print("speed:", res.get("speed"))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
