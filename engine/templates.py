"""Chat templates: the HF chat_template of a model folder rendered with jinja2 (sandboxed), or a plain
Phi-3-style format when there is none or it fails."""
from __future__ import annotations

import json
import os
from pathlib import Path


def load_hf_chat_template(model_dir: str | os.PathLike) -> str | None:
    d = Path(model_dir)
    try:
        t = json.loads((d / "tokenizer_config.json").read_text()).get("chat_template")
        if isinstance(t, list):  # [{name, template}, ...]
            t = next((x["template"] for x in t if x.get("name") == "default"), t[0]["template"])
        if t:
            return t
    except (OSError, ValueError, KeyError, IndexError):
        pass
    j = d / "chat_template.jinja"
    return j.read_text() if j.is_file() else None


def render_chat_template(template: str | None, messages: list[dict], bos: str = "",
                         eos: str = "") -> str:
    """HF chat_template rendered with jinja2; a plain Phi-3-style format when that fails."""
    if template:
        try:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

            def raise_exception(msg):
                raise ValueError(msg)

            env.globals["raise_exception"] = raise_exception
            return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                                    bos_token=bos, eos_token=eos)
        except Exception:
            pass
    return "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages) + "<|assistant|>\n"
