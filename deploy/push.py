"""Upload to the Hugging Face Hub with huggingface_hub (create_repo + upload_folder):

- push_space: an exported Space folder (repo type "space", sdk gradio);
- push_model: a model repository: the ONNX base files at the top (so the repository folder is an
  onnxruntime-genai model folder), adapters/<name>/{adapter.onnx_adapter, metadata.json, peft/} and a
  generated model card README.md with each adapter's recipe and metrics (from metadata.json).

The token comes from $HF_TOKEN or the UI's password field. It is passed to huggingface_hub only: never
printed, logged, written to disk or put into exports, and scrubbed from every error message.
$HF_ENDPOINT (read at call time) selects another Hub, as the tests do with tests/fake_hub.py."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Mapping

from artifacts import EXPORT_MARKER, is_marked_export
from deploy.space import (ADAPTER_FILES, PROJECT_ROOT, ExportError, _base_files, _dirs, _select, adapter_table,
                          export_space)

_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{6,}\b")
_REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")  # fullmatch ("$" passes a final newline)


class PushError(Exception):
    """A push that failed or was refused; the message is safe to show (no token inside)."""


def scrub(text: str, token: str | None = None) -> str:
    """The text without the token (and without anything shaped like a Hugging Face token)."""
    text = str(text)
    if token:
        text = text.replace(token, "***")
    return _TOKEN_RE.sub("hf_***", text)


def token_from_env(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    tok = (env.get("HF_TOKEN") or "").strip()
    if not tok:
        raise PushError("no Hugging Face token: set HF_TOKEN (a token with write access, from "
                        "https://huggingface.co/settings/tokens) or enter it in the Deploy tab's token field")
    return tok


def check_repo_id(repo_id: str) -> str:
    repo_id = (repo_id or "").strip()
    if not _REPO_RE.fullmatch(repo_id) or ".." in repo_id or repo_id.endswith((".git", ".")):
        raise PushError(f"invalid repository id {repo_id!r}: use OWNER/NAME (letters, digits, '-', '_', '.')")
    return repo_id


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _api(token: str):
    from huggingface_hub import HfApi
    return HfApi(endpoint=endpoint(), token=token)


def explain(exc: BaseException, repo_id: str, repo_type: str, token: str | None) -> str:
    """A clear message for a Hub error; never the token, never request headers."""
    status = None
    resp = getattr(exc, "response", None)
    if resp is not None:
        status = getattr(resp, "status_code", None)
    kind = "Space" if repo_type == "space" else "model repository"
    if status == 401:
        msg = ("the Hub refused the token (401 Unauthorized): it is wrong, expired or revoked. Create a token "
               "with write access at https://huggingface.co/settings/tokens and set HF_TOKEN or the token field")
    elif status == 403:
        msg = (f"no rights to create or write the {kind} {repo_id} (403 Forbidden): the token needs write "
               f"access and the namespace {repo_id.split('/')[0]!r} must be yours or an organization you "
               "can write to")
    elif status == 409:
        msg = (f"the name {repo_id} is already taken (409 Conflict): a repository with that name exists. Choose "
               "another name, or, if it is yours, push into it with --exist-ok (the 'push into an existing "
               "repository' box)")
    elif status == 404:
        msg = f"{kind} {repo_id} was not found on the Hub (404), or the token cannot see it"
    elif status is not None:
        msg = f"the Hub answered HTTP {status} for {kind} {repo_id}"
        server = ""
        try:
            server = resp.headers.get("X-Error-Message") or ""
        except Exception:
            pass
        if server:
            msg += f": {server}"
    elif _is_connection_error(exc):
        msg = (f"could not reach the Hugging Face Hub at {endpoint()} ({type(exc).__name__}: connection refused, "
               "offline or DNS failure); check the network (and HF_ENDPOINT)")
    else:
        msg = f"upload of {kind} {repo_id} failed: {type(exc).__name__}: {exc}"
    return scrub(msg, token)


def _is_connection_error(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name = type(exc).__name__
        if isinstance(exc, (ConnectionError, TimeoutError)) or name in (
                "ConnectError", "ConnectTimeout", "ReadTimeout", "ConnectionError", "NetworkError",
                "OfflineModeIsEnabled", "RemoteProtocolError"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _upload(folder: Path, repo_id: str, repo_type: str, token: str, private: bool, exist_ok: bool,
            message: str, log) -> str:
    repo_id = check_repo_id(repo_id)
    if not token:
        raise PushError("no Hugging Face token given")
    api = _api(token)
    log = log or (lambda m: None)
    try:
        kw = {"space_sdk": "gradio"} if repo_type == "space" else {}
        url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=exist_ok, **kw)
        log(f"repository {repo_id} ({repo_type}) ready")
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != EXPORT_MARKER)
        log(f"uploading {len(files)} files ({sum((folder / f).stat().st_size for f in files) / 1e6:.1f} MB)")
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type,
                          commit_message=message, ignore_patterns=[EXPORT_MARKER])
    except PushError:
        raise
    except Exception as e:  # huggingface_hub / httpx errors: a message without token or headers
        raise PushError(explain(e, repo_id, repo_type, token)) from None
    url = str(url)
    log(f"pushed to {url}")
    return url


def push_space(folder: str | Path, repo_id: str, token: str, private: bool = True, exist_ok: bool = False,
               log=None) -> str:
    """Uploads an exported Space folder: only a folder export_space wrote (its marker file), holding no
    symbolic links (an upload never carries a link's target)."""
    folder = Path(folder).expanduser()
    if not is_marked_export(folder) or not (folder / "app.py").is_file() or not (folder / "README.md").is_file():
        raise PushError(f"{folder} is not an exported Space (no {EXPORT_MARKER} marker, app.py or README.md): "
                        "run `python -m deploy space --out DIR` first")
    links = [p for p in folder.rglob("*") if p.is_symlink()]
    if links:
        raise PushError(f"{folder} holds symbolic links ({links[0].relative_to(folder)}): export it again")
    return _upload(folder, repo_id, "space", token, private, exist_ok, "Chat-only Space from LoRA studio", log)


def export_and_push_space(repo_id: str, token: str, base: str = "default", adapters: list[str] | None = None,
                          hardware: str = "cpu-basic", models_dir=None, adapters_dir=None, private: bool = True,
                          exist_ok: bool = False, log=None) -> str:
    """Exports a Space (deploy.space.export_space: ExportError when it cannot) into a temporary folder
    and pushes it."""
    with tempfile.TemporaryDirectory(prefix="space-export-") as d:
        # the lines name the temporary folder only as such (they are shown on the page)
        said = (lambda m: log(str(m).replace(d, "<temporary folder>"))) if log else None
        r = export_space(Path(d) / "space", base, adapters, hardware, models_dir, adapters_dir, log=said)
        return push_space(r.out, repo_id, token, private=private, exist_ok=exist_ok, log=said)


# ---------------------------------------------------------------------------- model repository
def _source_is_hub_id(src: str) -> bool:
    if not src or not _REPO_RE.fullmatch(src):
        return False
    return not (Path(src).exists() or (PROJECT_ROOT / src).exists() or src.startswith(("models/", "./")))


def model_card(repo_id: str, base, adapters) -> str:
    meta = base.meta or {}
    src = str(meta.get("source_model") or "")
    head = ["---", "library_name: onnxruntime-genai", "tags:", "- onnx", "- onnxruntime-genai", "- int4",
            "- lora", "- peft"]
    if _source_is_hub_id(src):
        head.append(f"base_model: {src}")
    head.append("---")
    lines = [f"# {repo_id.split('/')[-1]}", "",
             "An int4 ONNX model for [onnxruntime-genai](https://github.com/microsoft/onnxruntime-genai) whose "
             "LoRA MatMuls are slots fed at run time, with LoRA adapters as `.onnx_adapter` files (switched per "
             "request, nothing reloaded) and the same adapters as PEFT folders (for transformers+PEFT, vLLM, "
             "LoRAX). Built with LoRA studio.", "",
             "## Base", "",
             "| field | value |", "|---|---|"]
    for k in ("name", "source_model", "precision", "block_size", "execution_provider", "lora_layout",
              "fingerprint", "created"):
        if k in meta:
            lines.append(f"| {k} | `{meta[k]}` |")
    if meta.get("target_modules"):
        lines.append(f"| target_modules | `{', '.join(map(str, meta['target_modules']))}` |")
    lines += ["", "## Adapters", ""]
    if not adapters:
        lines.append("(none)")
    else:
        lines += adapter_table(adapters, detail=True)
        for a in adapters:
            m = a.metadata or {}
            lines += ["", f"### `{a.name}`", ""]
            ds = m.get("dataset")
            if isinstance(ds, dict) and ds.get("sha256"):
                lines.append(f"dataset sha256 `{ds['sha256']}`, {ds.get('examples', '?')} examples")
            if m.get("timings"):
                lines.append("stage timings (s): " + ", ".join(f"{k} {v:.0f}" if isinstance(v, (int, float))
                                                             else f"{k} {v}" for k, v in m["timings"].items()))
            if m.get("recipe"):
                lines += ["", "Recipe:", "", "```json", json.dumps(m["recipe"], indent=2, sort_keys=True,
                                                                     default=str), "```"]
    first = adapters[0].name if adapters else None
    lines += ["", "## Use", "", "```python", "import onnxruntime_genai as og",
              "from huggingface_hub import snapshot_download", "",
              f'path = snapshot_download("{repo_id}")',
              "model = og.Model(path)", "tokenizer = og.Tokenizer(model)", "adapters = og.Adapters(model)"]
    for a in adapters:
        lines.append(f'adapters.load(f"{{path}}/adapters/{a.name}/adapter.onnx_adapter", "{a.name}")')
    lines += ["params = og.GeneratorParams(model)", "generator = og.Generator(model, params)"]
    if first:
        lines.append(f'generator.set_active_adapter(adapters, "{first}")  # per request; omit for the base')
    lines += ['generator.append_tokens(tokenizer.encode(tokenizer.apply_chat_template('
              '\'[{"role": "user", "content": "Hello"}]\', add_generation_prompt=True)))',
              "while not generator.is_done():", "    generator.generate_next_token()", "```", ""]
    if first:
        lines += ["PEFT: `adapters/<name>/peft/` holds `adapter_config.json` and `adapter_model.safetensors` "
                  "for the HF base model the ONNX model was built from.", ""]
    return "\n".join(head) + "\n" + "\n".join(lines)


def stage_model_repo(dest: Path, base: str = "default", adapters: list[str] | None = None,
                     models_dir=None, adapters_dir=None, repo_id: str = "model") -> list[str]:
    """Writes the model repository's files into dest; returns their relative paths."""
    info, chosen = _select(base, adapters, *_dirs(models_dir, adapters_dir))
    dest.mkdir(parents=True, exist_ok=True)
    for f in _base_files(info):
        shutil.copy2(f, dest / f.name)
    for a in chosen:
        d = dest / "adapters" / a.name
        d.mkdir(parents=True)
        for name in ADAPTER_FILES:
            if (a.dir / name).is_file():
                shutil.copy2(a.dir / name, d / name)
        if (a.dir / "peft").is_dir():
            shutil.copytree(a.dir / "peft", d / "peft",
                            ignore=shutil.ignore_patterns(".*", "__pycache__", "*.pyc"))
    (dest / "README.md").write_text(model_card(repo_id, info, chosen), encoding="utf-8")
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())


def push_model(repo_id: str, token: str, base: str = "default", adapters: list[str] | None = None,
               models_dir=None, adapters_dir=None, private: bool = True, exist_ok: bool = False,
               log=None) -> str:
    repo_id = check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="model-repo-") as d:
        try:
            files = stage_model_repo(Path(d) / "repo", base, adapters, models_dir, adapters_dir, repo_id)
        except ExportError as e:
            raise PushError(str(e)) from None
        if log:
            log(f"model repository: {len(files)} files")
        return _upload(Path(d) / "repo", repo_id, "model", token, private, exist_ok,
                       f"ONNX base {base} with LoRA adapters (LoRA studio)", log)
