"""Chat engine on onnxruntime-genai 0.18: one og.Model + one og.Adapters serving the base and
every fitting LoRA adapter; a fresh og.Generator per request (thread-safe, adapters switch per
request without reloading anything). No UI code here.
"""
from __future__ import annotations

import json
import os
import random
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import onnxruntime_genai as og

from . import library as lib

BASE = "base"


@dataclass
class SamplingParams:
    temperature: float = 0.0          # 0 = greedy
    top_p: float = 1.0
    top_k: int = 50
    max_new_tokens: int = 128
    repetition_penalty: float = 1.0
    seed: int | None = None           # None = a fresh random seed per request

    def validate(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def request_seed(self) -> int:
        """The seed of one request: `seed`, or a fresh random one."""
        return self.seed if self.seed is not None else random.randrange(1, 2**31 - 1)


@dataclass
class Stats:
    ttft_s: float = 0.0               # request start -> first new token
    tokens: int = 0                   # new tokens so far
    tokens_per_s: float = 0.0         # decode rate after the first token
    seconds: float = 0.0              # request start -> now
    variant: str = BASE
    provider: str = "cpu"
    prompt_tokens: int = 0
    finished: bool = False
    finish_reason: str = ""           # "eos" | "length" | "context" | "" while running
    note: str = ""                    # e.g. the prompt was cut from the left


# ---------------------------------------------------------------- chat templates
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


# ---------------------------------------------------------------- engine
@dataclass
class _Loaded:
    info: lib.AdapterInfo
    og_name: str                      # unique name inside og.Adapters (versions get a suffix)
    in_use: int = 0
    retired: bool = False             # deleted/replaced on disk; unload when no longer in use


class ChatEngine:
    def __init__(self, model_dir: str | os.PathLike, adapters_dir: str | os.PathLike | None,
                 provider: str = "auto", cuda_graph: bool | None = None):
        self.model_dir = Path(model_dir)
        # CUDA graph: on by default on CUDA (measured on an H200: +23-28 % decode with an adapter
        # active, bench/results/h200-*); STUDIO_CUDA_GRAPH=0 turns it off.
        self.cuda_graph = (os.environ.get("STUDIO_CUDA_GRAPH", "1") != "0") if cuda_graph is None \
            else bool(cuda_graph)
        self.adapters_dir = Path(adapters_dir) if adapters_dir else None
        if provider not in ("auto", "cpu", "cuda"):
            raise ValueError(f"provider must be auto, cpu or cuda, not {provider!r}")
        self.base = lib.read_base(self.model_dir)
        self.model, self.provider = self._load_model(provider)
        self.tokenizer = og.Tokenizer(self.model)
        self.adapters = og.Adapters(self.model)
        self.eos_ids = {int(x) for x in self.tokenizer.eos_token_ids}
        gcfg = json.loads((self.model_dir / "genai_config.json").read_text())
        self.context_length = int(gcfg["model"].get("context_length")
                                  or gcfg.get("search", {}).get("max_length") or 2048)
        self._hf_template = load_hf_chat_template(self.model_dir)
        self._lock = threading.RLock()
        self._tok_lock = threading.Lock()
        self._loaded: dict[str, _Loaded] = {}      # variant name -> live adapter
        self._retired: list[_Loaded] = []
        self._refused: dict[str, lib.AdapterInfo] = {}
        self._seen_sig: dict[str, tuple] = {}     # dir name -> signature last checked
        self._version = 0
        self.refresh()

    # -- setup
    def _load_model(self, provider: str):
        if provider in ("auto", "cuda"):
            try:
                usable = bool(og.is_cuda_available())
            except Exception:  # pragma: no cover
                usable = False
            if usable or provider == "cuda":
                try:
                    cfg = og.Config(str(self.model_dir))
                    cfg.clear_providers()
                    cfg.append_provider("cuda")
                    if self.cuda_graph:
                        cfg.set_provider_option("cuda", "enable_cuda_graph", "1")
                    return og.Model(cfg), "cuda"
                except Exception as e:
                    if provider == "cuda":
                        raise RuntimeError(f"CUDA provider not usable: {e}") from e
        cfg = og.Config(str(self.model_dir))
        cfg.clear_providers()  # no provider = CPU
        return og.Model(cfg), "cpu"

    # -- library
    def variants(self) -> list[str]:
        with self._lock:
            return [BASE, *sorted(self._loaded)]

    def refused(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(n, i.reason) for n, i in sorted(self._refused.items())]

    def refresh(self) -> dict:
        """Load adapters that appeared or changed on disk, forget deleted ones. Stat-based:
        an unchanged folder costs two stat() calls. Returns {added, removed, refused}."""
        added, removed, refused = [], [], []
        with self._lock:
            dirs = {d.name: d for d in lib.adapter_dirs(self.adapters_dir)} if self.adapters_dir else {}
            for name in list(self._seen_sig):
                if name not in dirs:
                    self._seen_sig.pop(name)
                    self._refused.pop(name, None)
                    if name in self._loaded:
                        self._retire(self._loaded.pop(name))
                        removed.append(name)
            for name, d in dirs.items():
                sig = lib.stat_signature(d)
                if self._seen_sig.get(name) == sig:
                    continue
                self._seen_sig[name] = sig
                if name == BASE or not lib.safe_name(name):
                    info = lib.AdapterInfo(name=name, dir=d, reason="reserved or unsafe name")
                else:
                    info = lib.check_adapter(d, self.base)
                old = self._loaded.pop(name, None)
                if old is not None:
                    self._retire(old)
                    removed.append(name)
                if info.ok:
                    self._version += 1
                    og_name = f"{name}#{self._version}"
                    try:
                        self.adapters.load(str(info.path), og_name)
                    except Exception as e:
                        info.ok, info.reason = False, f"onnxruntime-genai refused it: {str(e)[:200]}"
                if info.ok:
                    self._refused.pop(name, None)
                    self._loaded[name] = _Loaded(info, og_name)
                    added.append(name)
                else:
                    self._refused[name] = info
                    refused.append(name)
            self._sweep()
        return {"added": added, "removed": removed, "refused": refused}

    def _retire(self, l: _Loaded) -> None:
        l.retired = True
        self._retired.append(l)

    def _sweep(self) -> None:
        keep = []
        for l in self._retired:
            if l.in_use == 0:
                try:
                    self.adapters.unload(l.og_name)
                except Exception:
                    keep.append(l)
            else:
                keep.append(l)
        self._retired = keep

    def _check_variant(self, variant: str) -> None:
        with self._lock:
            if variant != BASE and variant not in self._loaded:
                known = ", ".join(self.variants())
                why = dict(self.refused()).get(variant)
                extra = f" (refused: {why})" if why else ""
                raise ValueError(f"unknown variant {variant!r}{extra}; known: {known}")

    def _acquire(self, variant: str) -> _Loaded | None:
        with self._lock:
            self._check_variant(variant)
            if variant == BASE:
                return None
            l = self._loaded[variant]
            l.in_use += 1
            return l

    def _release(self, l: _Loaded | None) -> None:
        if l is None:
            return
        with self._lock:
            l.in_use -= 1
            if l.retired:
                self._sweep()

    # -- prompts
    def render(self, messages: list[dict]) -> str:
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        if not messages or not any(str(m.get("content") or "").strip() for m in messages):
            raise ValueError("empty prompt: give at least one message with content")
        msgs = [{"role": str(m.get("role") or "user"), "content": str(m.get("content") or "")}
                for m in messages]
        try:
            with self._tok_lock:
                return self.tokenizer.apply_chat_template(json.dumps(msgs), add_generation_prompt=True)
        except Exception:
            return render_chat_template(self._hf_template, msgs)

    def encode(self, messages: list[dict], max_new_tokens: int) -> tuple[list[int], str]:
        text = self.render(messages)
        with self._tok_lock:
            ids = [int(x) for x in self.tokenizer.encode(text)]
        if not ids:
            raise ValueError("empty prompt: it encodes to no tokens")
        note = ""
        # keep room for at least some new tokens; cut the oldest tokens first
        room = min(max_new_tokens, self.context_length // 2)
        keep = max(1, self.context_length - room)
        if len(ids) > keep:
            note = (f"prompt cut from the left: {len(ids)} -> {keep} tokens "
                    f"(context {self.context_length})")
            ids = ids[-keep:]
        return ids, note

    def _params(self, n_prompt: int, p: SamplingParams, seed: int) -> og.GeneratorParams:
        gp = og.GeneratorParams(self.model)
        opts = dict(max_length=min(self.context_length, n_prompt + p.max_new_tokens),
                    repetition_penalty=float(p.repetition_penalty))
        if p.greedy:
            opts.update(do_sample=False)
        else:
            opts.update(do_sample=True, temperature=float(p.temperature), top_p=float(p.top_p),
                        top_k=int(p.top_k), random_seed=int(seed))
        gp.set_search_options(**opts)
        return gp

    # -- generation
    def _request(self, messages, variant: str, params: SamplingParams, seed: int | None = None):
        """A started request: returns a step() iterator yielding (text_so_far, Stats)."""
        params.validate()
        self._check_variant(variant)
        ids, note = self.encode(messages, params.max_new_tokens)
        return self._run(ids, note, variant, params, params.request_seed() if seed is None else seed)

    def _run(self, ids, note, variant, params, seed) -> Iterator[tuple[str, Stats]]:
        t0 = time.perf_counter()
        held = self._acquire(variant)
        gen = None
        try:
            gen = og.Generator(self.model, self._params(len(ids), params, seed))
            if held is not None:
                gen.set_active_adapter(self.adapters, held.og_name)
            stream = self.tokenizer.create_stream()
            st = Stats(variant=variant, provider=self.provider, prompt_tokens=len(ids), note=note)
            gen.append_tokens(ids)
            text, t_first = "", None
            limit = min(params.max_new_tokens, self.context_length - len(ids))
            while st.tokens < limit and not gen.is_done():
                gen.generate_next_token()
                tok = int(gen.get_next_tokens()[0])
                now = time.perf_counter()
                if tok in self.eos_ids:
                    st.finish_reason = "eos"
                    break
                if t_first is None:
                    t_first = now
                    st.ttft_s = now - t0
                st.tokens += 1
                text += stream.decode(tok)
                st.seconds = now - t0
                st.tokens_per_s = (st.tokens - 1) / (now - t_first) if st.tokens > 1 and now > t_first else 0.0
                yield text, replace(st)
            if not st.finish_reason:
                st.finish_reason = "length" if st.tokens >= params.max_new_tokens else "context"
            st.finished = True
            st.seconds = time.perf_counter() - t0
            yield text, st
        finally:
            del gen
            self._release(held)

    def stream(self, messages, variant: str = BASE, params: SamplingParams | None = None
               ) -> Iterator[tuple[str, Stats]]:
        """Yields (text_so_far, Stats) per new token, then once more with Stats.finished=True.
        Errors about the request (unknown variant, empty prompt) are raised at call time."""
        return self._request(messages, variant, params or SamplingParams())

    def generate(self, messages, variant: str = BASE, params: SamplingParams | None = None
                 ) -> tuple[str, Stats]:
        text, st = "", None
        for text, st in self.stream(messages, variant, params):
            pass
        return text, st

    def compare(self, messages, variant_a: str, variant_b: str, params: SamplingParams | None = None
                ) -> Iterator[tuple[str, str, Stats, Stats]]:
        """Both variants token by token, interleaved in this thread, same prompt and seed.

        Why interleaved: a batch of 2 cannot carry two adapters (og applies one adapter to a
        whole batch), and on CPU two threads are no faster (generate_next_token holds the GIL).
        When both sides are the same variant the result is identical (same seed), so it runs once.
        """
        params = params or SamplingParams()
        seed = params.request_seed()
        ga = self._request(messages, variant_a, params, seed)
        if variant_a == variant_b:
            return ((t, t, s, replace(s)) for t, s in ga)
        gb = self._request(messages, variant_b, params, seed)
        return self._interleave(ga, gb, variant_a, variant_b)

    def _interleave(self, ga, gb, va, vb):
        ta = tb = ""
        sa, sb = Stats(variant=va, provider=self.provider), Stats(variant=vb, provider=self.provider)
        live = {"a": ga, "b": gb}
        try:
            while live:
                for k in list(live):
                    try:
                        t, s = next(live[k])
                    except StopIteration:
                        live.pop(k)
                        continue
                    if k == "a":
                        ta, sa = t, s
                    else:
                        tb, sb = t, s
                yield ta, tb, sa, sb
        finally:
            for g in live.values():
                g.close()

    def close(self) -> None:
        with self._lock:
            for l in list(self._loaded.values()):
                self._retire(l)
            self._loaded.clear()
            self._sweep()
