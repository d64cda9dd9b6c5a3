"""Training data: load and validate JSONL, render texts for training / calibration, check modules.

Four formats (see data/README.md), one per file, as JSON Lines or as one JSON array:
- 'prompt':   {"prompt": "...", "response": "..."}
- 'messages': {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
  (the last message must be the assistant's: it is the answer that is trained).
- 'alpaca':   {"instruction": "...", "input": "...", "output": "...", "system"?, "history"?: [[q, a], ...]}
- 'sharegpt': {"conversations": [{"from": "human"|"gpt"|"system", "value": "..."}, ...], "system"?}
The two imported ones (Alpaca, ShareGPT) ignore other top-level keys (ids, categories, Alpaca's "text"), as
the datasets that use them carry such keys. Every example is normalised to {"messages": [...]}. Errors are
`DataError`s naming file and line (or item).
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from artifacts import LimitError, max_upload_bytes
from artifacts.limits import unicode_problem, without_surrogates
from artifacts import check_template as _check_template

ROLES = ("system", "user", "assistant")
FORMATS = ("auto", "prompt", "messages", "alpaca", "sharegpt")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "model": "assistant", "system": "system"}
MAX_LINE_BYTES = 1 << 20     # one example (one JSONL line) at most 1 MiB
MAX_EXAMPLE_CHARS = 1 << 20  # ... and its texts together, in any format (an item of a JSON array too)
MAX_TURNS = 1_000            # messages of one example (history and conversations included)
MAX_EXAMPLES = 200_000       # examples of one file: an 8 MB file of tiny examples cost the preview seconds and GBs


def max_file_bytes() -> int:
    """The size limit for dataset files (CLI and uploads): $STUDIO_MAX_UPLOAD_MB, default 8 MB (one
    limit with the app's upload cap, artifacts.max_upload_bytes)."""
    return max_upload_bytes()


def check_file_size(path) -> int:
    """DataError when the file is over the dataset size limit; returns its size."""
    size = Path(path).stat().st_size
    limit = max_file_bytes()
    if size > limit:
        raise DataError(f"{Path(path).name}: {size / 1e6:.1f} MB is over the {limit / 1e6:g} MB limit for "
                        "dataset files (set STUDIO_MAX_UPLOAD_MB to change it)")
    return size


class DataError(ValueError):
    """Training data that cannot be used; the message names the file, the line and the problem. It quotes the
    file (its keys), so lone surrogates are replaced: no UTF-8 writer takes them (Gradio's orjson cut the
    stream of a preview whose message named a key "\\ud800", red-team pass 18)."""

    def __init__(self, *args):
        super().__init__(*(without_surrogates(a) if isinstance(a, str) else a for a in args))


# ---- text templates ------------------------------------------------------------------------
def check_template(t: str) -> str:
    """The text template rule (artifacts.check_template), as a DataError."""
    try:
        return _check_template(t)
    except LimitError as e:
        raise DataError(str(e)) from None


# ---- loading -------------------------------------------------------------------------------
def _detect(obj, where: str) -> str:
    if isinstance(obj, dict) and "messages" in obj:
        return "messages"
    if isinstance(obj, dict) and "conversations" in obj:
        return "sharegpt"
    if isinstance(obj, dict) and "instruction" in obj and "output" in obj:
        return "alpaca"
    if isinstance(obj, dict) and ("prompt" in obj or "response" in obj):
        return "prompt"
    keys = sorted(obj) if isinstance(obj, dict) else []
    raise DataError(f"{where}: cannot tell the format from the first example (keys {_keys(keys)}); expected "
                    "{\"prompt\", \"response\"}, {\"messages\": [...]}, Alpaca's {\"instruction\", \"input\", "
                    "\"output\"} or ShareGPT's {\"conversations\": [...]}")


def _keys(keys) -> str:
    """Keys named in a message: at most 10, each cut to 40 characters (a file's keys are the uploader's text)."""
    keys = [str(k) for k in keys]
    shown = ", ".join(k if len(k) <= 40 else k[:40] + "…" for k in keys[:10])
    return shown + (f" and {len(keys) - 10:,} more" if len(keys) > 10 else "")


def _nonempty_str(value, what: str, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: {what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: {what} is empty")
    why = unicode_problem(value)
    if why:
        raise DataError(f"{where}: {what} {why}")
    return value


def _optional_str(obj: dict, key: str, where: str) -> str:
    """An optional text field of an imported format: absent, null or "" is empty; anything else must be text."""
    v = obj.get(key)
    if v is None or v == "":
        return ""
    return _nonempty_str(v, key, where)


def _turns(items, what: str, where: str, limit: int = MAX_TURNS):
    """A list of turns, checked for its length before anything is made of it."""
    if not isinstance(items, list) or not items:
        raise DataError(f"{where}: {what} must be a non-empty list")
    if len(items) > limit:
        raise DataError(f"{where}: {len(items):,} {what}; one example may have at most {limit:,}")
    return items


def _checked(msgs: list[dict], where: str) -> dict:
    """The rules every example ends with: the last message is the assistant's, there is a user message, and its
    texts together are at most MAX_EXAMPLE_CHARS."""
    chars = sum(len(m["content"]) for m in msgs)
    if chars > MAX_EXAMPLE_CHARS:
        raise DataError(f"{where}: the example's texts are {chars:,} characters; one example may have at most "
                        f"{MAX_EXAMPLE_CHARS:,}")
    if msgs[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last message must be the assistant's (the answer to train), "
                        f"got {msgs[-1]['role']!r}")
    if not any(m["role"] == "user" for m in msgs):
        raise DataError(f"{where}: no user message")
    return {"messages": msgs}


def _alpaca(obj: dict, where: str) -> dict:
    """Alpaca: the instruction (and its input, after a blank line) is the user turn, the output the answer;
    an optional system text and a history of earlier [instruction, answer] pairs come first."""
    missing = [k for k in ("instruction", "output") if k not in obj]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)} (format 'alpaca' needs \"instruction\" "
                        "and \"output\")")
    msgs = []
    system = _optional_str(obj, "system", where)
    if system:
        msgs.append({"role": "system", "content": system})
    history = obj.get("history") or []
    if not isinstance(history, list):
        raise DataError(f"{where}: history must be a list of [instruction, answer] pairs")
    if history:
        _turns(history, "history pairs", where, MAX_TURNS // 2)
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise DataError(f"{where}, history item {i + 1}: must be a pair [instruction, answer]")
        msgs += [{"role": "user", "content": _nonempty_str(pair[0], "instruction", f"{where}, history item {i + 1}")},
                 {"role": "assistant", "content": _nonempty_str(pair[1], "answer", f"{where}, history item {i + 1}")}]
    prompt = _nonempty_str(obj["instruction"], "instruction", where)
    extra = _optional_str(obj, "input", where)
    msgs += [{"role": "user", "content": f"{prompt}\n\n{extra}" if extra else prompt},
             {"role": "assistant", "content": _nonempty_str(obj["output"], "output", where)}]
    return _checked(msgs, where)


def _sharegpt(obj: dict, where: str) -> dict:
    """ShareGPT: conversations of {"from", "value"} turns (human/user, gpt/assistant/chatgpt/model, system),
    an optional top-level system text first."""
    conv = _turns(obj["conversations"], "conversations", where)
    msgs = []
    system = _optional_str(obj, "system", where)
    if system:
        msgs.append({"role": "system", "content": system})
    for i, m in enumerate(conv):
        w = f"{where}, turn {i + 1}"
        if not isinstance(m, dict) or "from" not in m or "value" not in m:
            raise DataError(f"{w}: must be an object with \"from\" and \"value\"")
        role = SHAREGPT_ROLES.get(m["from"]) if isinstance(m["from"], str) else None
        if role is None:
            raise DataError(f"{w}: unknown speaker {str(m['from'])[:40]!r}; known: {', '.join(SHAREGPT_ROLES)}")
        msgs.append({"role": role, "content": _nonempty_str(m["value"], "value", w)})
    return _checked(msgs, where)


def _normalize(obj, fmt: str, where: str) -> dict:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: each example must be a JSON object, got {type(obj).__name__}")
    if fmt == "alpaca":
        return _alpaca(obj, where)
    if fmt == "sharegpt":
        if "conversations" not in obj:
            raise DataError(f"{where}: missing key conversations (format 'sharegpt')")
        return _sharegpt(obj, where)
    if fmt == "prompt":
        missing = [k for k in ("prompt", "response") if k not in obj]
        extra = sorted(set(obj) - {"prompt", "response"})
        if missing:
            raise DataError(f"{where}: missing key(s) {', '.join(missing)} (format 'prompt' needs "
                            "\"prompt\" and \"response\")")
        if extra:
            raise DataError(f"{where}: unexpected key(s) {_keys(extra)} (format 'prompt' has only "
                            "\"prompt\" and \"response\")")
        return _checked([{"role": "user", "content": _nonempty_str(obj["prompt"], "prompt", where)},
                         {"role": "assistant", "content": _nonempty_str(obj["response"], "response", where)}], where)
    # messages
    if "messages" not in obj:
        raise DataError(f"{where}: missing key messages (format 'messages')")
    extra = sorted(set(obj) - {"messages"})
    if extra:
        raise DataError(f"{where}: unexpected key(s) {_keys(extra)} (format 'messages' has only "
                        "\"messages\")")
    msgs = _turns(obj["messages"], "messages", where)
    out = []
    for i, m in enumerate(msgs):
        w = f"{where}, message {i + 1}"
        if not isinstance(m, dict):
            raise DataError(f"{w}: must be an object with role and content")
        missing = [k for k in ("role", "content") if k not in m]
        extra = sorted(set(m) - {"role", "content"})
        if missing:
            raise DataError(f"{w}: missing key(s) {', '.join(missing)}")
        if extra:
            raise DataError(f"{w}: unexpected key(s) {_keys(extra)}")
        role = m["role"]
        if role not in ROLES:
            raise DataError(f"{w}: unknown role {str(role)[:40]!r}; roles are {', '.join(ROLES)}")
        out.append({"role": role, "content": _nonempty_str(m["content"], "content", w)})
    return _checked(out, where)


def load_examples(path, fmt: str = "auto") -> list[dict]:
    """Read a JSONL file (or one JSON array of examples, as Alpaca's files are) into [{"messages": [...]}, ...];
    DataError with file and line (item) on any problem."""
    path = Path(path).expanduser()
    if fmt not in FORMATS:
        raise DataError(f"unknown data format {fmt!r}: use {', '.join(FORMATS)}")
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    check_file_size(path)
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path}: the file is UTF-16 (it starts with a UTF-16 byte order mark); save it "
                        "as UTF-8")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    examples = []
    for where, obj in _json_array(path, text) if text.lstrip().startswith("[") else _json_lines(path, text):
        if not isinstance(obj, dict):
            raise DataError(f"{where}: each example must be a JSON object, got {type(obj).__name__}")
        if fmt == "auto":
            fmt = _detect(obj, where)
        if len(examples) >= MAX_EXAMPLES:
            raise DataError(f"{path}: more than {MAX_EXAMPLES:,} examples; split the file or keep fewer")
        examples.append(_normalize(obj, fmt, where))
    if not examples:
        raise DataError(f"{path}: the file is empty (no examples)")
    return examples


def _parse(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})"
                        if text.count("\n") else f"{where}: malformed JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise DataError(f"{where}: the JSON is nested too deeply") from None
    except ValueError:  # an integer over Python's digit limit
        raise DataError(f"{where}: unusable JSON (a number with too many digits)") from None


def _json_lines(path: Path, text: str):
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        if len(line) > MAX_LINE_BYTES:
            raise DataError(f"{where}: the line is {len(line) / 1e6:.1f} MB long; one example may be at most "
                            f"{MAX_LINE_BYTES / 1e6:.1f} MB")
        yield where, _parse(line, where)


def _json_array(path: Path, text: str):
    """A file that is one JSON array: its items are the examples, named `<file>: item N`."""
    items = _parse(text, str(path))
    if not isinstance(items, list):  # (a '[' that is not an array: json.loads already refused it)
        raise DataError(f"{path}: expected a JSON array of examples")
    for n, obj in enumerate(items, 1):
        yield f"{path}: item {n}", obj


# ---- rendering -----------------------------------------------------------------------------
def _split(example: dict):
    msgs = example["messages"]
    return msgs[:-1], msgs[-1]["content"]


def _prompt_of(history) -> str:
    """Prompt text for a text template: the user turns (system prepended) joined by blank lines."""
    return "\n\n".join(m["content"] for m in history)


def render_prompt(example: dict, tokenizer, template: str = "") -> str:
    """The prompt part of the training text, ending exactly where the answer starts."""
    history, _ = _split(example)
    if template:
        return _format_prefix(template, _prompt_of(history))
    return tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)


def _format_prefix(template: str, prompt: str) -> str:
    check_template(template)
    marker = "\x00RESPONSE\x00"
    full = template.format(prompt=prompt, response=marker)
    return full[:full.index(marker)]


def render_text(example: dict, tokenizer, template: str = "") -> str:
    """The full training text (prompt + answer) with the chat template or the text template."""
    history, answer = _split(example)
    if template:
        check_template(template)
        return template.format(prompt=_prompt_of(history), response=answer)
    return tokenizer.apply_chat_template(example["messages"], tokenize=False)


def write_texts(path, texts) -> None:
    """Rendered training texts as JSONL lines {"text": ...} (what Olive's data config reads)."""
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")


def read_texts(path) -> list[str]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line]


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def calibration_texts(examples: list[dict], tokenizer, template: str, n: int, seed: int = 0) -> list[str]:
    """n rendered texts picked deterministically (same data and n -> same texts)."""
    idx = list(range(len(examples)))
    random.Random(seed).shuffle(idx)
    if n > len(idx):  # fewer examples than asked: repeat the shuffled order
        idx = (idx * (n // len(idx) + 1))
    return [render_text(examples[i], tokenizer, template) for i in idx[:n]]


# ---- model modules -------------------------------------------------------------------------
def linear_module_names(model_dir) -> list[str]:
    """Short names of the model's 2-D weight modules (e.g. q_proj, qkv_proj), read from the
    safetensors headers (no weights loaded)."""
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise DataError(f"{model_dir}: no .safetensors weights found (only safetensors weights are "
                        "loaded, never pickled pytorch_model.bin files)")
    names = set()
    for f in files:
        with open(f, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size))
        for key, info in header.items():
            if key == "__metadata__" or not key.endswith(".weight"):
                continue
            if len(info.get("shape", [])) != 2:
                continue
            parts = key[:-len(".weight")].split(".")
            if "layers" in parts or "h" in parts or "blocks" in parts:
                names.add(parts[-1])
    return sorted(names)


AUTO_TARGETS = (["qkv_proj", "o_proj"], ["q_proj", "k_proj", "v_proj", "o_proj"])


def resolve_target_modules(model_dir, modules) -> list[str]:
    """['auto'] -> the model's attention projections (the modules the ONNX LoRA slots exist for):
    qkv_proj,o_proj for Phi3-style models, q_proj,k_proj,v_proj,o_proj for Llama/Qwen2/Mistral-style.
    Other lists are checked against the model's modules."""
    if list(modules) != ["auto"]:
        return check_target_modules(model_dir, modules)
    have = set(linear_module_names(model_dir))
    for choice in AUTO_TARGETS:
        if set(choice) <= have:
            return list(choice)
    raise DataError(f"lora.target_modules 'auto' found no attention projections (qkv_proj/o_proj or "
                    f"q_proj/k_proj/v_proj/o_proj) in the model; its linear modules are {', '.join(sorted(have))}")


def check_target_modules(model_dir, modules) -> list[str]:
    have = linear_module_names(model_dir)
    missing = [m for m in modules if m not in have]
    if missing:
        raise DataError(f"the model has no module(s) {', '.join(missing)}; its linear modules are "
                        f"{', '.join(have)}")
    return list(modules)


# ---- held-out split --------------------------------------------------------------------------
MIN_HELDOUT = 20          # at least this many held-out examples when the set has 2 * MIN_HELDOUT or more


def heldout_size(n: int, fraction: float) -> int:
    """How many of n examples a held-out split of `fraction` takes: round(n * fraction), at least 20 when
    n >= 40, at least 1 when fraction > 0 and n >= 2, never all of them."""
    if not fraction > 0 or n < 2:  # (NaN too)
        return 0
    k = max(1, round(n * fraction))
    if n >= 2 * MIN_HELDOUT:
        k = max(k, MIN_HELDOUT)
    return min(k, n - 1)


def split_heldout(examples: list, fraction: float, seed: int = 0) -> tuple[list, list]:
    """(train, held_out): a seeded random choice of heldout_size() examples; both keep the file's order.
    Same examples, fraction and seed -> same split."""
    k = heldout_size(len(examples), fraction)
    idx = list(range(len(examples)))
    random.Random(seed).shuffle(idx)
    held = set(idx[:k])
    return ([ex for i, ex in enumerate(examples) if i not in held],
            [ex for i, ex in enumerate(examples) if i in held])


def heldout_note(n_train_file: int, eval_file: str, n_eval: int, fraction: float, seed: int) -> str:
    """One line on where the held-out data comes from (the preview and the job log say it)."""
    if eval_file:
        return f"held-out: {n_eval} examples from {Path(eval_file).name}"
    k = heldout_size(n_train_file, fraction)
    if not k:
        return "held-out: none (too few examples to hold some out; no held-out loss or evaluation)"
    asked = round(n_train_file * fraction)
    why = (f"{fraction * 100:g} % asked, raised to the minimum of {MIN_HELDOUT}" if k > max(asked, 1)
           else f"{fraction * 100:g} %")
    return f"held-out: {k} of {n_train_file} examples carved from the train file ({why}, seed {seed})"


def preview(train_file, fmt: str = "auto", eval_file: str = "", eval_fraction: float = 0.1,
            seed: int = 0, examples: list | None = None) -> str:
    """A short text about the data a recipe trains on: examples, and the held-out part. DataError on a
    bad file. `examples`: the training file's, when the caller has loaded them already."""
    train = examples if examples is not None else load_examples(train_file, fmt)
    n_eval = len(load_examples(eval_file, fmt)) if eval_file else 0
    return preview_of_counts(train_file, len(train), eval_file, n_eval, eval_fraction, seed)


def preview_of_counts(train_file, n_train: int, eval_file: str, n_eval: int, eval_fraction: float = 0.1,
                      seed: int = 0) -> str:
    """preview() from the files' example counts (the app keeps them, so that another seed or held-out fraction
    does not parse the files again)."""
    k = 0 if eval_file else heldout_size(n_train, eval_fraction)
    return (f"{Path(train_file).name}: {n_train} examples, {n_train - k} for training; "
            + heldout_note(n_train, eval_file, n_eval, eval_fraction, seed))
