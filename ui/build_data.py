"""The Build tab's data side: the preview of a training file (checked, the held-out part named, the first
examples rendered as the model sees them), uploads kept in <workspace>/uploads/, the derived adapter name."""
from __future__ import annotations

import filecmp
import hashlib
import html
import os
import shutil
import threading
from collections import OrderedDict
from pathlib import Path

from artifacts import LimitError, add_upload_owner
from artifacts.limits import make_uploads_room, max_uploads_bytes
from pipeline import data as pdata, jobs
from pipeline.data import DataError, load_examples, render_text
from pipeline.recipe import Recipe, default_adapter_name
from ui.engine import AppEngine, UIError

_tokenizers: dict = {}


def _tokenizer(app: AppEngine, base_model: str):
    """The tokenizer of an allowed base model (app.preview_model); its code is never run
    (trust_remote_code=False whatever the form says), a Hub id only from the local cache."""
    from transformers import AutoTokenizer
    model = app.preview_model(base_model)
    if model not in _tokenizers:
        _tokenizers[model] = AutoTokenizer.from_pretrained(model, trust_remote_code=False,
                                                           local_files_only=True)
    return _tokenizers[model]


def preview_data(app: AppEngine, train_file: str, fmt: str, template: str, base_model: str, trust: bool,
                 rows: int = 3, eval_file: str = "", eval_fraction: float = 0.1, seed: int = 0,
                 examples: list | None = None, client: str | None = None) -> str:
    """The data file checked, the held-out part named (pipeline.data.preview), and the first examples
    rendered as the model will see them. `examples`: the file's, when the caller loaded them (parsed once)."""
    if not (train_file or "").strip():
        return "⚠ no training file"
    path = eval_path = None

    def shown(msg: str) -> str:  # texts that name the resolved files name them as the workspace does
        for p in (eval_path, path):
            if p:
                msg = msg.replace(str(p), app.ws.shown(p))
        return msg

    try:
        path = app.data_file(train_file, "train_file", client)  # (client: only its own uploads)
        eval_path = str(app.data_file(eval_file, "eval_file", client)) if (eval_file or "").strip() else ""
        key = (_stat(path), _stat(eval_path), fmt, template, base_model, rows, eval_fraction, seed)
        with _previews_lock:  # the same files, unchanged, the same settings: no parse
            if examples is None and key in _previews:
                _previews.move_to_end(key)
                return _previews[key]
        # the files' facts (counts, first examples) by the files' identity: another seed, held-out fraction,
        # template or model does not parse them again (red-team pass 28: a new seed per request re-read a 6.5 MB
        # file of 199,000 rows, 1.6 CPU-s each, and two addresses kept both data-check slots full)
        fkey = (_stat(path), _stat(eval_path), fmt)
        with _previews_lock:
            facts = _facts.get(fkey) if examples is None else None
            if facts is not None:
                _facts.move_to_end(fkey)
        if facts is None:
            if examples is None:
                examples = load_examples(path, fmt or "auto")
            n_eval = len(load_examples(eval_path, fmt or "auto")) if eval_path else 0
            facts = (len(examples), examples[:FIRST_KEPT], n_eval)
            with _previews_lock:
                _facts[fkey] = facts
                while len(_facts) > PREVIEWS_KEPT:
                    _facts.popitem(last=False)
        n_train, examples, n_eval = facts
        split = shown(pdata.preview_of_counts(path, n_train, eval_path, n_eval,
                                              float(eval_fraction if eval_fraction is not None else 0.1),
                                              int(seed or 0)))
    except UIError as e:
        return f"⚠ {html.escape(str(e))}"
    except DataError as e:
        return f"⚠ **bad data file**: {html.escape(shown(str(e)))}"
    head = f"✓ {html.escape(split)}\n\nFirst {min(rows, n_train)} rendered"
    note = ""
    try:
        tok = None if template else _tokenizer(app, base_model)
        texts = [render_text(ex, tok, template or "") for ex in examples[:rows]]
        head += " with " + ("the text template" if template else "the model's chat template") + ":"
    except DataError as e:
        return f"⚠ **template**: {html.escape(str(e))}"
    except Exception as e:  # tokenizer not available (e.g. a Hub id offline): show the raw turns
        note = f"\n\n(could not load the tokenizer of {base_model!r}: {str(e).splitlines()[0][:200]})"
        texts = ["\n".join(f"{m['role']}: {m['content']}" for m in ex["messages"]) for ex in examples[:rows]]
    blocks = "\n\n".join(f"```text\n{_cap(t)}\n```" for t in texts)
    out = head + note + "\n\n" + blocks
    with _previews_lock:
        _previews[key] = out
        while len(_previews) > PREVIEWS_KEPT:
            _previews.popitem(last=False)
    return out


# previews of good files, by the files' identity and the settings: a client repeating the preview of one big file
# (a second or more each) held the data-check slots for good (red team pass 16)
PREVIEWS_KEPT = 64
FIRST_KEPT = 8  # examples kept per file for the rendered preview (rows is 3)
_previews: OrderedDict = OrderedDict()
_facts: OrderedDict = OrderedDict()  # (files, format) -> (examples, the first FIRST_KEPT of them, eval examples)
_previews_lock = threading.Lock()


def _stat(path) -> tuple | None:
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return str(path), st.st_size, st.st_mtime_ns, st.st_ino


PREVIEW_CHARS = 2000  # characters of one rendered example shown in the preview


def _cap(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + f" … ({len(text):,} characters)"


def store_upload(app: AppEngine, tmp_path: str, client: str | None = None) -> str:
    """Copies an uploaded file into <workspace>/uploads/ under a content-addressed name; returns the path
    relative to the workspace (what the form shows)."""
    src = Path(tmp_path)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:10]
    dest_dir = app.ws.root / "uploads"
    dest_dir.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in src.stem)[:40] or "data"
    suffix = ".json" if src.suffix.lower() == ".json" else ".jsonl"  # (the loader reads either by content)
    dest = dest_dir / f"{stem}-{digest}{suffix}"
    if dest.exists() and not filecmp.cmp(src, dest, shallow=False):
        # another file under the same name: the 10-digit digest is only a name, never proof of the content
        # (red-team pass 30 forged a file whose digest began like another client's upload, to be recorded as its
        # owner): this one is stored under its full digest
        dest = dest_dir / f"{stem}-{hashlib.sha256(src.read_bytes()).hexdigest()}{suffix}"
    if not dest.exists():
        size = src.stat().st_size
        # requests cannot fill the disk: the least recently used uploads that no run needs make room first
        try:
            # (resumable runs keep at most an eighth of the folder per client and half of it in all)
            cap = max_uploads_bytes()
            make_uploads_room(dest_dir, size,
                              in_use=lambda: jobs.uploads_in_use(app.ws, share_bytes=cap // 8, total_bytes=cap // 2))
        except LimitError as e:
            raise UIError(str(e)) from None
        shutil.copyfile(src, dest)
    else:
        try:
            os.utime(dest)  # used again: the last to go when room is made
        except OSError:
            pass
    add_upload_owner(app.ws, dest.name, client)  # (only its uploaders may name it: artifacts/owners.py)
    return f"uploads/{dest.name}"


def name_placeholder(app: AppEngine, train_file: str) -> str:
    try:
        return f"empty: {default_adapter_name(train_file or '', app.adapters_dir)} (from the training file)"
    except Exception:
        return "empty: derived from the training file"


def check_data(app: AppEngine, recipe: Recipe) -> None:
    for f in (recipe.train_file, recipe.eval_file):
        if f and f.strip():
            path = app.ws.resolve_input(f)
            try:
                load_examples(path, recipe.data_format)
            except DataError as e:  # named as the workspace names it, never the server's folders
                raise UIError(f"bad data file: {str(e).replace(str(path), app.ws.shown(path))}") from None
