"""Train the embedded default model: a tiny Phi-3-shaped chat model with a byte-level BPE tokenizer.

    python -m pipeline.tiny [--out models/default-hf] [--steps N] [--device auto|cpu|cuda] [--seed 0]

The defaults are the shipped model (6 layers x 384, 12.2 M parameters, 1,000 steps of 64 x 256 tokens,
dropout 0.3: about a minute on an H200, hours on a CPU; `STEPS=1000 bash pipeline/gpu_pretrain.sh OUT 0.3 0.4
0.5` trained it and kept the lowest held-out loss; 3,200 steps overfit the 0.65 M-token corpus, see
bench/results/pretrain-h200-2026-12-03.json).

The result is an ordinary Hugging Face folder (config.json, model.safetensors, generation_config.json,
tokenizer.json, tokenizer_config.json with a Phi-3-style chat template), plus TRAINING.json and a short
README.md model card. The app serves it offline and the tests use it in place of a Hub model.

Weights are stored in float16 to keep the committed file small; config.json says float32, so
transformers loads the model as float32 by default, and the onnxruntime-genai builder converts it
to the precision it is asked for.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import random
import sys
import time
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
EOT, END = "<|endoftext|>", "<|end|>"
VOCAB_SIZE = 4096

# Phi-3 style: <|role|>\n{content}<|end|>\n for each turn; <|assistant|>\n as the generation prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT / "data" / "corpus"
DEFAULT_OUT = ROOT / "models" / "default-hf"

SAMPLE_PROMPTS = [
    "What do cats eat?",
    "How can I sleep better?",
    "Tell me about Paris.",
    "What should I pack for a trip?",
]


def render_chat(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """Python twin of CHAT_TEMPLATE (checked against the Jinja rendering at training time)."""
    out = "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages)
    return out + ("<|assistant|>\n" if add_generation_prompt else "")


# ----------------------------------------------------------------------------------------------
# corpus


def _corpus_file(corpus_dir: Path, name: str) -> Path | None:
    """`name` or its gzip twin `name.gz` (the committed corpus is compressed)."""
    for p in (corpus_dir / name, corpus_dir / (name + ".gz")):
        if p.exists():
            return p
    return None


def load_corpus(corpus_dir: Path) -> tuple[list[str], dict]:
    """Documents: each chat rendered through the template, each prose paragraph on its own."""
    import gzip

    docs: list[str] = []
    info: dict = {"files": {}}
    h = hashlib.sha256()
    chat = _corpus_file(corpus_dir, "chat.jsonl")
    prose = _corpus_file(corpus_dir, "prose.txt")
    if chat is None and prose is None:
        raise SystemExit(f"no corpus: none of chat.jsonl(.gz), prose.txt(.gz) in {corpus_dir}")
    n_chat = n_prose = 0
    for path in (chat, prose):
        if path is None:
            continue
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        name = path.name.removesuffix(".gz")
        h.update(name.encode() + b"\0" + raw)
        info["files"][path.name] = {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
        text = raw.decode("utf-8")
        if path is chat:
            for line in text.splitlines():
                if not line.strip():
                    continue
                msgs = json.loads(line)["messages"]
                docs.append(render_chat(msgs))
                n_chat += 1
        else:
            for para in text.replace("\r\n", "\n").split("\n\n"):
                para = para.strip()
                if para:
                    docs.append(para)
                    n_prose += 1
    info.update(sha256=h.hexdigest(), chat_examples=n_chat, prose_paragraphs=n_prose,
                chars=sum(len(d) for d in docs))
    return docs, info


# ----------------------------------------------------------------------------------------------
# tokenizer


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token=END,
        pad_token=EOT,
        unk_token=None,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (EOT, END)],
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


def save_tokenizer(hf_tok, out: Path) -> None:
    try:
        hf_tok.save_pretrained(out, save_jinja_files=False)
    except TypeError:  # older transformers: the template always goes to tokenizer_config.json
        hf_tok.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    jinja = out / "chat_template.jinja"
    if jinja.exists():
        jinja.unlink()


# ----------------------------------------------------------------------------------------------
# model


def make_config(tok, layers: int, hidden: int, heads: int, intermediate: int, tied: bool, dropout: float = 0.0):
    from transformers import Phi3Config

    return Phi3Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        original_max_position_embeddings=2048,
        rope_scaling=None,
        tie_word_embeddings=tied,
        bos_token_id=tok.convert_tokens_to_ids(EOT),
        eos_token_id=tok.convert_tokens_to_ids(END),
        pad_token_id=tok.convert_tokens_to_ids(EOT),
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attention_dropout=dropout,
    )


def pack(docs: list[str], tok, seq_len: int):
    import torch

    eot = tok.convert_tokens_to_ids(EOT)
    ids: list[int] = []
    for enc in tok(docs, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(eot)
    n = len(ids) // seq_len
    if n == 0:  # tiny held-out set: pad one sequence (padding excluded from the loss)
        t = torch.full((1, seq_len), -100, dtype=torch.long)
        t[0, : len(ids)] = torch.tensor(ids)
        return t, len(ids)
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len), len(ids)


def lr_at(step: int, steps: int, warmup: int, peak: float, floor: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


def evaluate(model, data, batch_size: int, device, amp_dtype) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            x = data[i : i + batch_size].to(device)
            inp = x.clamp(min=0)
            labels = x
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(input_ids=inp).logits.float()
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                ignore_index=-100, reduction="sum")
            total += loss.item()
            count += int((labels[:, 1:] != -100).sum())
    model.train()
    return total / max(1, count)


def chat_answer(model, tok, prompt: str, max_new_tokens: int = 48, system: str | None = None) -> str:
    import torch

    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=False)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    device = next(model.parameters()).device
    x = torch.tensor([list(ids)], device=device)
    with torch.no_grad():
        out = model.generate(x, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, x.shape[1]:], skip_special_tokens=True).strip()


# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.tiny", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="folder with chat.jsonl and prose.txt (or their .gz)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 5%% of --steps)")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--intermediate", type=int, default=1024)
    ap.add_argument("--untied", action="store_true", help="separate LM head (larger file)")
    ap.add_argument("--dropout", type=float, default=0.3, help="residual/embedding/attention dropout in training")
    ap.add_argument("--holdout", type=float, default=0.02)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    ap.add_argument("--init", default=None,
                    help="continue pre-training this model folder (its tokenizer and weights) instead of starting from scratch")
    ap.add_argument("--max-train-seconds", type=float, default=None,
                    help="time budget: the schedule follows max(step, time) progress and ends when either is spent")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    import tokenizers
    import transformers
    from tqdm.auto import tqdm
    from transformers import GenerationConfig, Phi3ForCausalLM

    transformers.logging.set_verbosity_error()
    t_start = time.time()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device available")
    amp_dtype = torch.bfloat16 if device.type == "cuda" else None
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.cuda.manual_seed_all(args.seed)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # corpus and split (document level, seeded)
    docs, corpus_info = load_corpus(Path(args.corpus))
    rng = random.Random(args.seed)
    order = list(range(len(docs)))
    rng.shuffle(order)
    n_hold = max(1, int(round(len(docs) * args.holdout)))
    held_docs = [docs[i] for i in order[:n_hold]]
    train_docs = [docs[i] for i in order[n_hold:]]
    print(f"corpus: {corpus_info['chat_examples']} chats, {corpus_info['prose_paragraphs']} paragraphs, "
          f"{corpus_info['chars']:,} chars; held out {len(held_docs)} documents", flush=True)

    # tokenizer (trained on the training split only)
    t0 = time.time()
    if args.init:  # continued pre-training: the checkpoint's own tokenizer
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(args.init)
    else:
        tok = train_tokenizer(train_docs)
    save_tokenizer(tok, out)
    example = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
               {"role": "assistant", "content": "A"}]
    assert tok.apply_chat_template(example, tokenize=False) == render_chat(example)
    print(f"tokenizer: vocab {len(tok)}, {time.time() - t0:.1f}s", flush=True)

    train, n_train_tokens = pack(train_docs, tok, args.seq_len)
    held, n_held_tokens = pack(held_docs, tok, args.seq_len)
    print(f"tokens: train {n_train_tokens:,} ({len(train)} sequences of {args.seq_len}), "
          f"held-out {n_held_tokens:,}", flush=True)

    if args.init:
        model = Phi3ForCausalLM.from_pretrained(args.init, dtype=torch.float32, resid_pdrop=args.dropout,
                                                embd_pdrop=args.dropout, attention_dropout=args.dropout).to(device)
        config = model.config
        args.layers, args.hidden, args.heads = config.num_hidden_layers, config.hidden_size, config.num_attention_heads
        args.intermediate, args.untied = config.intermediate_size, not config.tie_word_embeddings
    else:
        config = make_config(tok, args.layers, args.hidden, args.heads, args.intermediate, not args.untied,
                             args.dropout)
        model = Phi3ForCausalLM(config).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: Phi3ForCausalLM, {n_params:,} parameters, device {device}", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
                            fused=device.type == "cuda")
    warmup = args.warmup if args.warmup is not None else max(1, args.steps // 20)
    gen = torch.Generator().manual_seed(args.seed)
    train_dev = train.to(device)
    perm = torch.randperm(len(train), generator=gen)
    pos = 0
    history = []
    tokens_seen = 0
    ema = None
    loss_sum, loss_n = None, 0
    model.train()
    t_train = time.time()
    steps_done = 0
    bar = tqdm(range(args.steps), desc="training", unit="step", mininterval=1.0, file=sys.stdout)
    for step in bar:
        if pos + args.batch_size > len(perm):
            perm = torch.randperm(len(train), generator=gen)
            pos = 0
        idx = perm[pos : pos + args.batch_size]
        pos += args.batch_size
        x = train_dev[idx.to(device)]
        if args.max_train_seconds:  # progress by time when that is further along than by steps
            frac = (time.time() - t_train) / args.max_train_seconds
            if frac >= 1.0:
                tqdm.write(f"time budget of {args.max_train_seconds:.0f}s spent at step {step}", file=sys.stdout)
                break
            step_eff = max(step, int(frac * args.steps))
        else:
            step_eff = step
        lr = lr_at(step_eff, args.steps, warmup, args.lr, args.lr * 0.1)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens_seen += x.numel()
        steps_done = step + 1
        loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
        loss_n += 1
        if step % 20 == 0 or step == args.steps - 1:
            lv = loss.item()  # one sync every 20 steps
            ema = lv if ema is None else 0.7 * ema + 0.3 * lv
            bar.set_postfix(loss=f"{ema:.3f}", lr=f"{lr:.1e}")
        if (step + 1) % args.eval_every == 0 or step == args.steps - 1:
            ev = evaluate(model, held, 64, device, amp_dtype)
            mean = (loss_sum / loss_n).item()
            loss_sum, loss_n = None, 0
            history.append({"step": step + 1, "train_loss": round(mean, 4), "eval_loss": round(ev, 4)})
            tqdm.write(f"step {step + 1}: train {mean:.3f}  held-out {ev:.3f}", file=sys.stdout)
    bar.close()
    train_seconds = time.time() - t_train
    final_train = evaluate(model, train[: min(len(train), 256)], 64, device, amp_dtype)
    final_held = evaluate(model, held, 64, device, amp_dtype)

    # save: float16 tensors, config.json says float32 (transformers then loads float32)
    model.eval()
    samples = [{"prompt": p, "answer": chat_answer(model, tok, p)} for p in SAMPLE_PROMPTS]
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=[tok.convert_tokens_to_ids(END), tok.convert_tokens_to_ids(EOT)],
        pad_token_id=config.pad_token_id,
        do_sample=False,
    )
    for k in ("resid_pdrop", "embd_pdrop", "attention_dropout"):  # saved model: no dropout
        setattr(model.config, k, 0.0)
    model.to("cpu").to(torch.float16).save_pretrained(out)
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["dtype"] = "float32"
    cfg.pop("torch_dtype", None)
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    save_tokenizer(tok, out)  # again: save_pretrained of the model must not have touched it

    weights = out / "model.safetensors"
    seconds = time.time() - t_start
    report = {
        "model": "Phi3ForCausalLM",
        "command": "python -m pipeline.tiny " + " ".join(sys.argv[1:] if argv is None else argv),
        "parameters": n_params,
        "init": args.init,
        "config": {"layers": args.layers, "hidden": args.hidden, "heads": args.heads,
                   "intermediate": args.intermediate, "vocab": VOCAB_SIZE, "tied_embeddings": not args.untied,
                   "stored_dtype": "float16", "config_dtype": "float32"},
        "weights_bytes": weights.stat().st_size,
        "steps": steps_done,
        "planned_steps": args.steps,
        "max_train_seconds": args.max_train_seconds,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "tokens_seen": tokens_seen,
        "lr": args.lr,
        "warmup": warmup,
        "dropout": args.dropout,
        "schedule": "linear warm-up, cosine to 10% of peak; AdamW(0.9, 0.95), wd 0.1, clip 1.0",
        "seed": args.seed,
        "device": str(device) + (f" ({torch.cuda.get_device_name(0)})" if device.type == "cuda" else ""),
        "mixed_precision": "bf16 autocast" if amp_dtype is not None else "fp32",
        "train_seconds": round(train_seconds, 1),
        "seconds": round(seconds, 1),
        "final_train_loss": round(final_train, 4),
        "final_eval_loss": round(final_held, 4),
        "eval_history": history,
        "corpus": {**corpus_info, "train_documents": len(train_docs), "held_out_documents": len(held_docs),
                   "train_tokens": n_train_tokens, "held_out_tokens": n_held_tokens},
        "samples": samples,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
    }
    (out / "TRAINING.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / "README.md").write_text(model_card(report))

    print("\n=== summary ===")
    print(f"parameters      {n_params:,}")
    print(f"weights         {weights.stat().st_size / 1e6:.2f} MB (float16; loads as float32)")
    print(f"device          {report['device']}, {report['mixed_precision']}")
    print(f"steps           {steps_done} x {args.batch_size} x {args.seq_len} ({tokens_seen:,} tokens)")
    print(f"training time   {train_seconds:.1f}s (total {seconds:.1f}s)")
    print(f"loss            train {final_train:.4f}  held-out {final_held:.4f} "
          f"(ppl {math.exp(final_held):.1f})")
    print(f"corpus sha256   {corpus_info['sha256']}")
    for s in samples:
        print(f"Q: {s['prompt']}\nA: {s['answer']}")
    print(f"saved to        {out}")
    return 0


def model_card(r: dict) -> str:
    c = r["config"]
    samples = "\n".join(f"- **{s['prompt']}** → {s['answer']}" for s in r["samples"])
    return f"""# default-hf: the embedded default model

A tiny Phi-3-shaped chat model ({r['parameters']:,} parameters; {c['layers']} layers, hidden {c['hidden']},
{c['heads']} heads, MLP {c['intermediate']}, vocab {c['vocab']}, tied embeddings: {c['tied_embeddings']}) trained
{'from scratch' if not r.get('init') else 'further, from `' + str(r['init']) + '`,'} by `python -m pipeline.tiny` on the project's own corpus (`data/corpus/`). It exists so that the
app runs offline and the tests need no Hub model. It writes short, mostly grammatical English; it knows
little and is often wrong. Do not use it for anything but demos and tests.

- Tokenizer: byte-level BPE (`tokenizers`), 4096 tokens; specials `<|endoftext|>` `<|user|>` `<|assistant|>`
  `<|system|>` `<|end|>`; eos `<|end|>`.
- Chat format (Phi-3 style, in `tokenizer_config.json`): `<|user|>\\n...<|end|>\\n<|assistant|>\\n`.
- Weights are stored in float16 (`model.safetensors`, {r['weights_bytes'] / 1e6:.1f} MB); `config.json` says
  float32, so transformers loads float32.
- Training: {r['steps']} steps x {r['batch_size']} x {r['seq_len']} tokens on {r['device']}, {r['train_seconds']} s,
  seed {r['seed']}, dropout {r['dropout']} (`{r['command']}`). Final loss: train {r['final_train_loss']}, held-out {r['final_eval_loss']}.
  Details in `TRAINING.json`.

Greedy samples:
{samples}
"""


if __name__ == "__main__":
    sys.exit(main())
