"""Fine-tuning levers "data loading and batch size", measured through the pipeline's real LoRA stage
(`pipeline.stage_finetune.run_finetune`: Olive LoRA pass -> transformers.Trainer, in this process).

One `run_finetune` call per configuration (fresh out dir, the model reloaded each time), r 16, alpha 32,
the pipeline's 'auto' target modules, max_seq_len 256, no eval set. Per configuration: steady-state
seconds per step (median of the step intervals after the first 5 steps, from the per-step `progress`
callbacks), samples/s, real (non-padding) tokens/s, time to first step, total wall time of the call
(model load + Olive overhead + steps + adapter save), final loss, and on CUDA the peak allocated memory.

  python bench/finetune_levers.py --model /tmp/b/hf --train data/travel/train.jsonl --out results.json \
      [--steps 30] [--device cuda|cpu] [--grid default|small]

Grid "default" (8 configurations): batch 1, 4, 8, 16, 32 with dataloader_num_workers 0; at batch 8:
4 dataloader workers (+ pin_memory), length-grouped sampling, and packed sequences (Olive's 'join'
pre-processing instead of 'line-by-line', only when the data yields enough blocks). "small": batch 1, 8.

Tokens: `tok_s_est` = mean real tokens per rendered text (model tokenizer, truncated at max_seq_len)
* batch / s_per_step, an estimate from the mean; `tok_s` is measured: the real tokens (attention-mask
sum) and padded tokens of the batches the Trainer actually got (Trainer.training_step wrapped here),
averaged over the run, / s_per_step.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common as C  # noqa: E402

SKIP_STEPS = 5  # step intervals before this step are warm-up


# ------------------------------------------------------------------ the log object and the Trainer hook
class StepClock:
    """The `log` run_finetune expects (log / emit / progress); records perf_counter at each step end."""

    def __init__(self, quiet_steps: bool = True):
        self.t0 = time.perf_counter()
        self.step_times: dict[int, float] = {}
        self.events: list[dict] = []
        self.quiet_steps = quiet_steps

    def log(self, msg: str, level: str = "info") -> None:
        print(f"    [{time.perf_counter() - self.t0:6.1f}s] {msg}", flush=True)

    __call__ = log

    def emit(self, type: str, **fields) -> dict:
        ev = {"type": type, **fields}
        self.events.append(ev)
        return ev

    def progress(self, stage: str, done: int, total: int) -> None:
        if done not in self.step_times:
            self.step_times[done] = time.perf_counter()


class BatchCounter:
    """Wraps transformers.Trainer.training_step for the duration of one run: counts real / padded
    tokens of each batch (tensors kept, summed after the run: no GPU sync per step) and reads the
    Trainer's effective arguments and dataloader once (to check the overrides were applied)."""

    def __init__(self, check_keys):
        self.check_keys = list(check_keys)
        self.real = []
        self.padded = 0
        self.batches = 0
        self.seen: dict = {}
        self._orig = None

    def __enter__(self):
        import transformers
        self._cls = transformers.Trainer
        self._orig = self._cls.training_step
        orig, counter = self._orig, self

        def training_step(trainer, *args, **kw):
            try:
                counter._count(trainer, args[1] if len(args) > 1 else kw.get("inputs"))
            except Exception as e:  # noqa: BLE001 - measuring must never break training
                counter.seen.setdefault("count_error", repr(e))
            return orig(trainer, *args, **kw)

        self._cls.training_step = training_step
        return self

    def __exit__(self, *exc):
        self._cls.training_step = self._orig
        return False

    def _count(self, trainer, inputs):
        if not self.seen:
            a = trainer.args
            self.seen = {k: getattr(a, k, "<not a TrainingArguments field>") for k in self.check_keys}
            try:
                dl = getattr(trainer.callback_handler, "train_dataloader", None)
                base = getattr(dl, "base_dataloader", dl)
                self.seen["dataloader_num_workers_effective"] = getattr(base, "num_workers", None)
                self.seen["dataloader_pin_memory_effective"] = getattr(base, "pin_memory", None)
                bs = getattr(base, "batch_sampler", None)
                sampler = getattr(bs, "sampler", None) or getattr(base, "sampler", None)
                self.seen["sampler"] = type(sampler).__name__ if sampler is not None else None
            except Exception as e:  # noqa: BLE001
                self.seen["dataloader_error"] = repr(e)
        ids = inputs["input_ids"]
        self.padded += int(ids.numel())
        self.batches += 1
        mask = inputs.get("attention_mask")
        self.real.append(mask.sum() if mask is not None else int(ids.numel()))

    def totals(self) -> dict:
        if not self.batches:
            return {}
        real = sum(int(x) for x in self.real)  # .item() per tensor, after the run
        return {"batches": self.batches, "real_tokens_per_step": real / self.batches,
                "padded_tokens_per_step": self.padded / self.batches,
                "padding_fraction": round(1 - real / self.padded, 4) if self.padded else None}


# ------------------------------------------------------------------ data
def render_train(model: Path, train: Path, max_seq_len: int):
    from transformers import AutoTokenizer

    from pipeline import data
    tok = AutoTokenizer.from_pretrained(model)
    if not getattr(tok, "chat_template", None):
        raise SystemExit(f"{model} has no chat template (the pipeline would need a text template)")
    examples = data.load_examples(train, "auto")
    texts = [data.render_text(ex, tok, "") for ex in examples]
    ids = tok(texts, add_special_tokens=False, truncation=False)["input_ids"]
    lens = [len(x) for x in ids]
    joiner = len(tok.encode("\n\n", add_special_tokens=False))  # Olive's default joiner for 'join'
    return texts, lens, joiner


def join_blocks(lens: list[int], joiner: int, L: int) -> int:
    """How many max_seq_len blocks Olive's 'join' strategy makes (non-overlapping, a last partial
    block dropped: `range(0, total - L, L)`)."""
    total = sum(n + joiner for n in lens)
    return len(range(0, total - L, L)) if total > L else 0


def sampling_override() -> tuple[dict | None, str]:
    """Length-grouped sampling in this transformers: `train_sampling_strategy` (newer 5.x) or
    `group_by_length` (older); Olive silently drops unknown keys, so pick the one that exists."""
    import transformers
    names = {f.name for f in dataclasses.fields(transformers.TrainingArguments) if f.init}
    if "train_sampling_strategy" in names:
        return {"train_sampling_strategy": "group_by_length"}, "train_sampling_strategy"
    if "group_by_length" in names:
        return {"group_by_length": True}, "group_by_length"
    return None, "neither train_sampling_strategy nor group_by_length is a TrainingArguments field"


def grid(name: str, lens, joiner, L: int) -> list[dict]:
    plain = {"dataloader_num_workers": 0}
    if name == "small":
        return [{"name": f"b{b}", "batch": b, "train": dict(plain)} for b in (1, 8)]
    rows = [{"name": f"b{b}", "batch": b, "train": dict(plain)} for b in (1, 4, 8, 16, 32)]
    rows.append({"name": "b8 workers4 pin", "batch": 8,
                 "train": {"dataloader_num_workers": 4, "dataloader_pin_memory": True}})
    ov, why = sampling_override()
    rows.append({"name": "b8 group_by_length", "batch": 8, "train": {**plain, **ov} if ov else None,
                 "skip": None if ov else why})
    blocks = join_blocks(lens, joiner, L)
    skip = None
    if blocks < 8:
        skip = (f"'join' makes {blocks} block(s) of {L} tokens from {sum(lens)} tokens: fewer than one "
                "batch of 8")
    rows.append({"name": "b8 packed (join)", "batch": 8, "train": dict(plain), "packed": True,
                 "data": {"pre_process_data_config": {"strategy": "join"}}, "join_blocks": blocks, "skip": skip})
    return rows


# ------------------------------------------------------------------ one configuration
def run_one(g: dict, a, model: Path, texts, targets, mean_len: float, work: Path, cuda: bool) -> dict:
    import torch

    from pipeline.recipe import LoRAConfig
    from pipeline.stage_finetune import run_finetune

    row = {"name": g["name"], "batch": g["batch"], "training_overrides": g.get("train"),
           "data_overrides": g.get("data")}
    if g.get("join_blocks") is not None:
        row["join_blocks"] = g["join_blocks"]
    if g.get("skip"):
        row["skipped"] = g["skip"]
        print(f"  skipped: {g['skip']}", flush=True)
        return row
    cfg = LoRAConfig(r=16, alpha=32, target_modules=list(targets), max_steps=a.steps, batch_size=g["batch"],
                     max_seq_len=a.max_seq_len, seed=0)
    out = work / g["name"].replace(" ", "_").replace("(", "").replace(")", "")
    shutil.rmtree(out, ignore_errors=True)
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        row["cuda_allocated_before_mib"] = round(torch.cuda.memory_allocated() / 2**20, 1)
    clock = StepClock()
    counter = BatchCounter(list((g.get("train") or {}).keys()))
    t0 = time.perf_counter()
    try:
        with counter:
            res = run_finetune(model, texts, None, cfg, out, clock, device="cuda" if cuda else "cpu",
                               training_overrides=g.get("train"), data_overrides=g.get("data"))
    except Exception as e:  # noqa: BLE001 - record and go on with the next configuration
        row["error"] = f"{type(e).__name__}: {e}"[:2000]
        row["traceback_tail"] = traceback.format_exc()[-1500:]
        row["wall_s"] = round(time.perf_counter() - t0, 2)
        print(f"  FAILED: {row['error'][:400]}", flush=True)
        res = None
    t1 = time.perf_counter()
    if cuda:
        row["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        row["cuda_peak_over_before_mib"] = round(row["cuda_max_allocated_mib"] - row["cuda_allocated_before_mib"], 1)
    steps = sorted(clock.step_times)
    times = [clock.step_times[s] for s in steps]
    row["steps_seen"] = len(steps)
    row["applied"] = counter.seen
    try:
        row.update(counter.totals())
    except Exception as e:  # noqa: BLE001
        row["count_error"] = repr(e)
    if res is None:
        return row
    iv = [times[i] - times[i - 1] for i in range(1, len(times))]
    steady = iv[SKIP_STEPS - 1:] if len(iv) >= SKIP_STEPS else iv  # intervals ending at step 6, 7, ...
    sps = statistics.median(steady) if steady else None
    b = g["batch"]
    per_sample = a.max_seq_len if g.get("packed") else mean_len
    row.update({
        "wall_s": round(t1 - t0, 2),
        "first_step_s": round(times[0] - t0, 2) if times else None,
        "after_last_step_s": round(t1 - times[-1], 2) if times else None,
        "s_per_step": round(sps, 5) if sps else None,
        "s_per_step_mean": round(statistics.mean(steady), 5) if steady else None,
        "steady_intervals": len(steady),
        "intervals_ms": [round(1000 * x, 1) for x in iv],  # step 2 - step 1, step 3 - step 2, ...
        "samples_s": round(b / sps, 2) if sps else None,
        "tok_s_est": round(per_sample * b / sps, 1) if sps else None,
        "tok_s": (round(row["real_tokens_per_step"] / sps, 1) if sps and row.get("real_tokens_per_step") else None),
        "padded_tok_s": (round(row["padded_tokens_per_step"] / sps, 1)
                         if sps and row.get("padded_tokens_per_step") else None),
        "final_loss": res.get("train_loss"),
        "losses": res.get("losses"),
        "stage_seconds": res.get("seconds"),
    })
    # the same training texts per second: packed samples hold max_seq_len tokens, not one text
    row["texts_s"] = round(row["tok_s_est"] / mean_len, 2) if g.get("packed") and sps else row["samples_s"]
    if not a.keep:
        shutil.rmtree(out, ignore_errors=True)
    return row


def logging_steps(a, targets, work: Path, cuda: bool) -> int:
    """The Trainer's logging_steps the pipeline picks for --steps (each logged step syncs the GPU)."""
    from pipeline.recipe import LoRAConfig
    from pipeline.stage_finetune import olive_config
    cfg = LoRAConfig(max_steps=a.steps, target_modules=list(targets))
    return olive_config(a.model, work / "t.jsonl", None, cfg, work, cuda)["passes"]["f"]["training_args"]["logging_steps"]


# ------------------------------------------------------------------ report
COLS = [("config", "name"), ("batch", "batch"), ("s/step", "s_per_step"), ("samples/s", "samples_s"),
        ("texts/s", "texts_s"), ("tok/s real", "tok_s"), ("tok/s est", "tok_s_est"), ("pad %", "pad_pct"),
        ("1st step s", "first_step_s"), ("wall s", "wall_s"), ("final loss", "final_loss"),
        ("peak MiB", "cuda_max_allocated_mib")]


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(c for c, _ in COLS) + " |", "|" + "---|" * len(COLS)]
    for r in rows:
        cells = []
        for _, k in COLS:
            v = r.get(k)
            if k == "pad_pct" and r.get("padding_fraction") is not None:
                v = round(100 * r["padding_fraction"], 1)
            if k == "final_loss" and isinstance(v, float):
                v = round(v, 4)
            cells.append("" if v is None else str(v))
        if r.get("skipped") or r.get("error"):
            cells[2] = "skipped: " + r["skipped"] if r.get("skipped") else "FAILED: " + r["error"][:120]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="HF model folder (safetensors + tokenizer)")
    ap.add_argument("--train", type=Path, default=ROOT / "data/travel/train.jsonl")
    ap.add_argument("--out", type=Path, required=True, help="results JSON")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when present")
    ap.add_argument("--grid", choices=["default", "small"], default="default")
    ap.add_argument("--max-seq-len", type=int, default=256)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep each configuration's out dir")
    ap.add_argument("--only", default="", help="comma-separated config names to run (debugging)")
    a = ap.parse_args()

    import torch
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU")
    if a.steps <= SKIP_STEPS + 1:
        print(f"note: --steps {a.steps} leaves {max(0, a.steps - SKIP_STEPS)} steady interval(s)", flush=True)

    from pipeline import data
    t_start = time.perf_counter()
    texts, lens, joiner = render_train(a.model, a.train, a.max_seq_len)
    eff = [min(n, a.max_seq_len) for n in lens]
    mean_len = statistics.mean(eff)
    targets = data.resolve_target_modules(a.model, ["auto"])
    # one-time imports and CUDA init outside the timed calls (else the first configuration pays them)
    for mod in ("olive.workflows", "peft", "transformers", "olive.passes.pytorch.lora"):
        importlib.import_module(mod)
    if cuda:
        (torch.ones(64, 64, device="cuda") @ torch.ones(64, 64, device="cuda")).sum().item()

    g = grid(a.grid, lens, joiner, a.max_seq_len)
    if a.only:
        keep = {s.strip() for s in a.only.split(",")}
        g = [x for x in g if x["name"] in keep]
    work = a.work or Path(tempfile.mkdtemp(prefix="ft-levers-"))
    work.mkdir(parents=True, exist_ok=True)
    res = {"info": C.device_info(device), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "settings": {"model": str(a.model), "train": str(a.train), "steps": a.steps, "device": device,
                        "grid": a.grid, "r": 16, "alpha": 32, "target_modules": targets,
                        "max_seq_len": a.max_seq_len, "eval": None, "skip_steps": SKIP_STEPS,
                        "logging_steps": logging_steps(a, targets, work, cuda),
                        "train_texts": len(texts), "tokens_mean": round(mean_len, 2),
                        "tokens_min": min(eff), "tokens_max": max(eff),
                        "tokens_median": statistics.median(eff),
                        "truncated_texts": sum(n > a.max_seq_len for n in lens),
                        "dtype": "bfloat16 (Olive LoRA torch_dtype on CUDA)" if cuda else "float32",
                        "notes": ["s_per_step: median of step intervals after the first "
                                  f"{SKIP_STEPS} steps (progress callback at each step end)",
                                  "tok_s_est: mean real tokens per text (truncated at max_seq_len) * batch / "
                                  "s_per_step, an estimate from the mean; packed rows: max_seq_len per sample",
                                  "tok_s / padded_tok_s: measured from the batches the Trainer got",
                                  "wall_s: the whole run_finetune call (model load + Olive + steps + save)",
                                  "texts_s: training texts per second (packed rows: tok_s_est / mean text "
                                  "length)",
                                  "logging_steps is the pipeline's for --steps (1 up to 39 steps): each logged "
                                  "step reads the loss, a GPU sync, so the CPU cannot run ahead of the GPU "
                                  "and data loading in the main process (workers 0) adds to the step time"]},
           "rows": []}
    print(f"{len(texts)} texts, tokens mean {mean_len:.1f} (min {min(eff)}, max {max(eff)}); targets "
          f"{','.join(targets)}; {len(g)} configs on {device}; work {work}", flush=True)
    for x in g:
        print(f"== {x['name']}", flush=True)
        t = time.perf_counter()
        row = run_one(x, a, a.model, texts, targets, mean_len, work, cuda)
        row["config_s"] = round(time.perf_counter() - t, 2)
        res["rows"].append(row)
        print(f"  -> {row.get('s_per_step')} s/step, {row.get('samples_s')} samples/s, {row.get('tok_s')} tok/s, "
              f"wall {row.get('wall_s')} s, loss {row.get('final_loss')}", flush=True)
        C.write_json(a.out, res)
    res["total_s"] = round(time.perf_counter() - t_start, 1)
    C.write_json(a.out, res)
    if not a.work and not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(res["rows"]))
    print(f"\n{res['total_s']} s in all; results in {a.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
