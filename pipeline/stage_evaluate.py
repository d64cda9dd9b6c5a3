"""Stage `evaluate`: what the fine-tune changed, measured on what is served: the int4 ONNX base through
the chat engine (onnxruntime-genai), with and without the new adapter.

- held-out loss: mean cross-entropy of the reference answers' tokens (the tokens after the prompt) over
  the held-out examples, from the logits og computes for the whole text (`Generator.get_output("logits")`
  after `append_tokens`), base and adapter; perplexity = exp(loss);
- greedy answers (max 64 new tokens) of base and adapter to the first 5 held-out prompts, beside the
  reference answers.
The result goes into the adapter's metadata.json ("eval") and the job's log (`eval_result` event).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

MAX_LOSS_EXAMPLES = 200   # held-out examples scored for the loss (the first ones)
SAMPLES = 5               # greedy answers shown
MAX_NEW_TOKENS = 64


def nll(model, adapters, ids: list[int], n_prompt: int, adapter: str | None) -> tuple[float, int]:
    """Summed negative log-likelihood of ids[n_prompt:] given what precedes, and the token count, from an
    onnxruntime-genai Model (adapter: a name loaded into `adapters`, or None for the base)."""
    import onnxruntime_genai as og
    gp = og.GeneratorParams(model)
    gp.set_search_options(max_length=len(ids) + 1, do_sample=False)
    gen = og.Generator(model, gp)
    try:
        if adapter:
            gen.set_active_adapter(adapters, adapter)
        gen.append_tokens(ids)
        logits = np.asarray(gen.get_output("logits"), dtype=np.float32)[0]  # [len(ids), vocab]
    finally:
        del gen
    start = max(1, n_prompt)
    z = logits[start - 1:len(ids) - 1]
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    targets = np.asarray(ids[start:], dtype=np.int64)
    return float(-logp[np.arange(len(targets)), targets].sum()), len(targets)


def _nll(engine, ids: list[int], n_prompt: int, adapter: str | None) -> tuple[float, int]:
    """nll() on the chat engine's onnxruntime-genai backend (evaluate() asks for it)."""
    return nll(engine.backend.model, engine.backend.adapters, ids, n_prompt, adapter)


def _tokens(engine, held: list[dict]) -> list[tuple[list[int], int]]:
    out = []
    for ex in held[:MAX_LOSS_EXAMPLES]:
        ids = [int(t) for t in engine.tokenizer.encode(ex["text"])]
        prompt = [int(t) for t in engine.tokenizer.encode(ex["prompt"])]
        n_prompt = len(prompt) if ids[:len(prompt)] == prompt else 0
        ids = ids[:engine.context_length - 1]
        if len(ids) - max(1, n_prompt) >= 1:
            out.append((ids, n_prompt))
    return out


def evaluate(base_dir: Path, adapter_dir: Path, held: list[dict], source: str, log=None) -> dict:
    """Held-out loss/perplexity and greedy samples of the base and of the adapter in adapter_dir (a
    folder with adapter.onnx_adapter and metadata.json) on the ONNX base in base_dir."""
    from engine.chat import BASE, ChatEngine, SamplingParams
    from pipeline.errors import StageError
    name = adapter_dir.name
    engine = ChatEngine(base_dir, adapter_dir.parent, backend="og")  # og's logits of a whole text
    try:
        if name not in engine.variants():
            why = dict(engine.refused()).get(name, "not found")
            raise StageError(f"the served model refused the new adapter: {why}")
        og_name = "__evaluate__"
        engine.backend.adapters.load(str(adapter_dir / "adapter.onnx_adapter"), og_name)
        seqs = _tokens(engine, held)
        if not seqs:
            raise StageError("no held-out example has answer tokens within the model's context")
        loss = {}
        for label, adapter in (("base", None), ("adapter", og_name)):
            total, count = 0.0, 0
            for ids, n_prompt in seqs:
                nll, n = _nll(engine, ids, n_prompt, adapter)
                total, count = total + nll, count + n
            loss[label] = total / count
        if log:
            log.log(f"held-out loss on the served model ({len(seqs)} examples): base {loss['base']:.4f}, "
                    f"adapter {loss['adapter']:.4f}")
        greedy = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW_TOKENS)
        samples = []
        for ex in held[:SAMPLES]:
            msgs = ex["messages"][:-1]
            base_text, _ = engine.generate(msgs, BASE, greedy)
            ad_text, _ = engine.generate(msgs, name, greedy)
            samples.append({"prompt": next(m["content"] for m in reversed(msgs) if m["role"] == "user"),
                            "reference": ex["messages"][-1]["content"], "base": base_text, "adapter": ad_text})
        try:
            engine.backend.adapters.unload(og_name)
        except Exception:
            pass
    finally:
        engine.close()
    return {"n": len(seqs), "source": source, "base_loss": round(loss["base"], 5),
            "adapter_loss": round(loss["adapter"], 5), "base_ppl": round(math.exp(min(loss["base"], 50)), 4),
            "adapter_ppl": round(math.exp(min(loss["adapter"], 50)), 4), "samples": samples,
            "served": f"{base_dir.name} ({engine.provider})"}


def run(job, d: Path) -> dict:
    held_file = job.job_dir / "stages/prepare/heldout.jsonl"
    held = [json.loads(line) for line in held_file.read_text(encoding="utf-8").splitlines() if line] \
        if held_file.is_file() else []
    if not held:
        return {"_skip": "no held-out examples (too few to hold some out)"}
    adapter_dir = Path(job.out["adapter"]["adapter_dir"])
    result = evaluate(Path(job.out["onnx"]["onnx_dir"]), adapter_dir, held,
                      job.out["prepare"].get("eval_source", ""), job.log)
    meta_file = adapter_dir / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["eval"] = result
    meta_file.write_text(json.dumps(meta, indent=2, default=str))
    job.log.emit("eval_result", **result)
    return {"eval": result}
