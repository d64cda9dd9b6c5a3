"""Chat engine on onnxruntime-genai 0.18: one og.Model + one og.Adapters serving the base and
every fitting LoRA adapter; a fresh og.Generator per request (thread-safe, adapters switch per
request without reloading anything). No UI code here.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import onnxruntime_genai as og

import artifacts as lib

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


def _count_token(st: Stats, now: float, t0: float) -> None:
    """Account one new (non-EOS) token of a request started at t0: first-token time, count, decode rate."""
    if st.tokens == 0:
        st.ttft_s = now - t0
    st.tokens += 1
    st.seconds = now - t0
    decode = st.seconds - st.ttft_s
    st.tokens_per_s = (st.tokens - 1) / decode if st.tokens > 1 and decode > 0 else 0.0


def _finish(st: Stats, params: SamplingParams) -> None:
    if not st.finish_reason:
        st.finish_reason = "length" if st.tokens >= params.max_new_tokens else "context"
    st.finished = True


# ---------------------------------------------------------------- engine
@dataclass
class _Loaded:
    info: lib.AdapterInfo
    og_name: str                      # unique name inside og.Adapters (versions get a suffix)
    in_use: int = 0
    retired: bool = False             # deleted/replaced on disk; unload when no longer in use


@dataclass
class _Pair:
    """A stacked pair adapter (rows layout): batch row 0 gets `members[0]`, row 1 `members[1]`."""
    og_name: str
    members: tuple                    # og names of the two sides (None = the base)
    file: Path
    in_use: int = 0
    stale: bool = False


class ChatEngine:
    MAX_PAIRS = 4                     # pair adapters kept loaded (each holds both sides' weights)

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
        self._pairs: OrderedDict[tuple, _Pair] = OrderedDict()
        self._pair_dir: Path | None = None
        # compare mode: one batch of 2 with a pair adapter where the base has the rows layout
        # (STUDIO_COMPARE=interleave forces the old scheduling); see compare()
        # Not under CUDA graph: onnxruntime 1.31's GroupQueryAttention refuses the batch-of-2 prompt when
        # og binds the graph's static KV buffers ("batch_size must be 1 when sequence_length > 1 and past
        # context is given", measured on an H200); there compare interleaves (bench/serve_gpu.py).
        graph = self.provider == "cuda" and self.cuda_graph
        self.compare_batched = self.base.rows and not graph and \
            os.environ.get("STUDIO_COMPARE", "batch") != "interleave"
        self.compare_note = "" if self.compare_batched else (
            "interleaved: this base has no per-row LoRA dim (built before layout 3)" if not self.base.rows
            else "interleaved: CUDA graph on (a batch-of-2 prompt is refused under it)" if graph
            else "interleaved (STUDIO_COMPARE=interleave)")
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
                        info.ok, info.reason = False, f"onnxruntime-genai refused it: {lib.clean_message(e)[:200]}"
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
        live = {l.og_name for l in self._loaded.values()}
        for key, p in list(self._pairs.items()):
            if any(m is not None and m not in live for m in p.members):
                p.stale = True
            if p.stale and p.in_use == 0:
                self._drop_pair(key)
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
            text = ""
            limit = min(params.max_new_tokens, self.context_length - len(ids))
            while st.tokens < limit and not gen.is_done():
                gen.generate_next_token()
                tok = int(gen.get_next_tokens()[0])
                now = time.perf_counter()
                if tok in self.eos_ids:
                    st.finish_reason = "eos"
                    break
                _count_token(st, now, t0)
                text += stream.decode(tok)
                yield text, replace(st)
            _finish(st, params)
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
        """Both variants on the same prompt, token by token: yields (text_a, text_b, stats_a, stats_b).

        On a rows-layout base (every pipeline build since layout 3) both answers come from ONE batch of
        2: a pair adapter stacks the two LoRAs on the per-row axis, so row 0 runs variant_a and row 1
        variant_b (the base side is a zero row). A decode step of a batch of 2 costs about what one of
        batch 1 does, so both answers take about as long as one. Greedy answers equal the ones each
        variant gives alone (up to float rounding on a GPU); sampled ones use one generator's random
        stream for both rows. Older bases, or STUDIO_COMPARE=interleave: two generators stepped in
        turn in this thread (og applies one adapter to a whole batch, and generate_next_token holds
        the GIL, so threads would not overlap). The same variant twice runs once.
        """
        params = params or SamplingParams()
        seed = params.request_seed()
        if variant_a == variant_b:
            ga = self._request(messages, variant_a, params, seed)
            return ((t, t, s, replace(s)) for t, s in ga)
        if self.compare_batched:
            params.validate()
            self._check_variant(variant_a)
            self._check_variant(variant_b)
            ids, note = self.encode(messages, params.max_new_tokens)
            return self._pair_or_fallback(messages, ids, note, variant_a, variant_b, params, seed)
        ga = self._request(messages, variant_a, params, seed)
        gb = self._request(messages, variant_b, params, seed)
        return self._interleave(ga, gb, variant_a, variant_b)

    def _pair_or_fallback(self, messages, ids, note, va, vb, params, seed):
        """The batched compare; if it fails before its first token, this request falls back to
        interleaving, with the reason in its right-hand Stats.note. Nothing global changes: one
        request's failure (a bad value, an adapter that vanished) never changes how others run."""
        it = self._run_pair(ids, note, va, vb, params, seed)
        try:
            first = next(it)
        except StopIteration:
            return
        except Exception as e:
            it.close()
            why = f"interleaved: the batch of 2 failed ({type(e).__name__}: {str(e)[:200]})"
            ga = self._request(messages, va, params, seed)
            gb = self._request(messages, vb, params, seed)
            for ta, tb, sa, sb in self._interleave(ga, gb, va, vb):
                yield ta, tb, sa, replace(sb, note="; ".join(x for x in (sb.note, why) if x))
            return
        yield first
        yield from it

    # -- compare as one batch (rows layout)
    def _pair_file_of(self, variant: str):
        return None if variant == BASE else self._loaded[variant].info.path

    def _acquire_pair(self, va: str, vb: str) -> _Pair:
        """The loaded pair adapter for (va, vb), made on first use (a few ms per MB of adapters)."""
        with self._lock:
            self._check_variant(va)
            self._check_variant(vb)
            members = tuple(None if v == BASE else self._loaded[v].og_name for v in (va, vb))
            p = self._pairs.get(members)
            if p is not None and not p.stale:
                self._pairs.move_to_end(members)
                p.in_use += 1
                return p
            if self._pair_dir is None:
                self._pair_dir = Path(tempfile.mkdtemp(prefix="studio-pairs-"))
            self._version += 1
            og_name = f"pair:{va}|{vb}#{self._version}"
            f = self._pair_dir / f"pair-{self._version}.onnx_adapter"
            lib.write_pair_adapter(self._pair_file_of(va), self._pair_file_of(vb), f)
            try:
                self.adapters.load(str(f), og_name)
            except Exception:
                f.unlink(missing_ok=True)
                raise
            p = _Pair(og_name, members, f, in_use=1)
            self._pairs[members] = p
            while len(self._pairs) > self.MAX_PAIRS:
                old_key, old = next(iter(self._pairs.items()))
                if old.in_use:
                    break
                self._drop_pair(old_key)
            return p

    def _drop_pair(self, key) -> None:
        p = self._pairs.pop(key)
        try:
            self.adapters.unload(p.og_name)
        except Exception:  # pragma: no cover - in use elsewhere: keep it, try again on the next sweep
            self._pairs[key] = p
            return
        p.file.unlink(missing_ok=True)

    def _release_pair(self, p: _Pair) -> None:
        with self._lock:
            p.in_use -= 1
            if p.stale or len(self._pairs) > self.MAX_PAIRS:
                self._sweep()

    def _run_pair(self, ids, note, va, vb, params, seed):
        t0 = time.perf_counter()
        pair = self._acquire_pair(va, vb)
        gen = None
        try:
            gp = self._params(len(ids), params, seed)
            gp.set_search_options(batch_size=2)
            gen = og.Generator(self.model, gp)
            gen.set_active_adapter(self.adapters, pair.og_name)
            streams = [self.tokenizer.create_stream(), self.tokenizer.create_stream()]
            st = [Stats(variant=v, provider=self.provider, prompt_tokens=len(ids), note=note) for v in (va, vb)]
            gen.append_tokens(np.array([ids, ids], dtype=np.int32))
            texts = ["", ""]
            limit = min(params.max_new_tokens, self.context_length - len(ids))
            while not all(s.finished for s in st) and not gen.is_done():
                gen.generate_next_token()
                toks = [int(x) for x in gen.get_next_tokens()]
                now = time.perf_counter()
                for r, s in enumerate(st):
                    if s.finished:
                        continue
                    if toks[r] in self.eos_ids:
                        s.finish_reason = "eos"
                        _finish(s, params)
                        continue
                    _count_token(s, now, t0)
                    texts[r] += streams[r].decode(toks[r])
                    if s.tokens >= limit:
                        _finish(s, params)
                yield texts[0], texts[1], replace(st[0]), replace(st[1])
            end = time.perf_counter() - t0
            for s in st:
                _finish(s, params)
                s.seconds = s.seconds or end
            yield texts[0], texts[1], st[0], st[1]
        finally:
            del gen
            self._release_pair(pair)

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
            if self._pair_dir is not None and not self._pairs:
                shutil.rmtree(self._pair_dir, ignore_errors=True)
                self._pair_dir = None
