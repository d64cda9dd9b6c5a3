"""Graph rewrites of a built model folder with LoRA slots: thin CLI over pipeline/lora_layout.py.

The implementation (levers share_a and fuse_qkv, and the adapter-name mapping) lives in
pipeline/lora_layout.py; the pipeline builds Phi3 bases in the fuse_qkv layout itself (stage_onnx), so
these rewrites apply to builder-layout folders (e.g. `build_onnx(..., lora_layout="builder")`).

    python bench/lora_rewrite.py SRC_MODEL_DIR DST_MODEL_DIR --lever fuse_qkv [--adapter IN OUT ...]
    python bench/lora_rewrite.py --check ADAPTER_FILE SRC_MODEL_DIR [WORK]  # CPU: greedy tokens before == after

DST gets the rewritten graph and a copy (never a hard link) of the weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402
from pipeline.lora_layout import LEVERS, convert_adapter_file, rewrite  # noqa: E402


# ---------------------------------------------------------------- CPU check: outputs identical
def greedy(model_dir: Path, adapter: Path | None, prompt: list[int], n: int, provider: str = "cpu"):
    """Greedy tokens and the last step's logits with og (adapter active when given)."""
    import onnxruntime_genai as og
    model = C.og_model(model_dir, provider)
    ads = None
    if adapter:
        ads = og.Adapters(model)
        ads.load(str(adapter), "a")
    gen = C.og_generator(model, prompt, n, ads, "a" if adapter else None)
    toks, logits = [], []
    while not gen.is_done():
        logits.append(np.array(gen.get_logits(), dtype=np.float32).ravel())
        gen.generate_next_token()
        toks.append(int(gen.get_next_tokens()[0]))
    return toks, np.stack(logits)


def check(src: Path, adapter: Path, work: Path, levers=LEVERS, n: int = 24) -> dict:
    """Rewrite SRC with each lever, convert the adapter, and compare greedy tokens and logits."""
    rng = np.random.default_rng(0)
    vocab = json.loads((src / "genai_config.json").read_text())["model"]["vocab_size"]
    prompt = [int(x) for x in rng.integers(8, vocab, 12)]
    ref_tok, ref_log = greedy(src, adapter, prompt, n)
    base_tok, _ = greedy(src, None, prompt, n)
    res = {"adapter_changes_tokens": ref_tok != base_tok, "levers": {}}
    for lever in levers:
        d = work / f"rw-{lever}"
        info = rewrite(src, d, lever)
        ad = work / f"rw-{lever}.onnx_adapter"
        convert_adapter_file(adapter, ad, lever)
        tok, log = greedy(d, ad, prompt, n)
        tok0, _ = greedy(d, None, prompt, n)
        rel = float(np.abs(log - ref_log).max() / (np.abs(ref_log).max() + 1e-12))
        res["levers"][lever] = {"tokens_equal": tok == ref_tok, "no_adapter_tokens_equal": tok0 == base_tok,
                                "max_rel_logit_diff": rel, "ops": info["ops"], "lora_inputs": info["lora_inputs"]}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path, nargs="?")
    ap.add_argument("--lever", choices=LEVERS)
    ap.add_argument("--adapter", nargs=2, action="append", default=[], metavar=("IN", "OUT"))
    ap.add_argument("--check", type=Path, metavar="ADAPTER", help="CPU equality check of every lever")
    a = ap.parse_args()
    if a.check:
        work = a.dst or Path("/tmp/lora_rewrite_check")
        r = check(a.src, a.check, work)
        print(json.dumps(r, indent=2))
        ok = all(v["tokens_equal"] and v["no_adapter_tokens_equal"] for v in r["levers"].values())
        sys.exit(0 if ok else 1)
    if not (a.dst and a.lever):
        ap.error("DST and --lever are required (or --check ADAPTER)")
    print(json.dumps(rewrite(a.src, a.dst, a.lever), indent=2))
    for i, o in a.adapter:
        print(json.dumps(convert_adapter_file(Path(i), Path(o), a.lever)))


if __name__ == "__main__":
    main()
