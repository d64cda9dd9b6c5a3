"""The chat engine: one base (an ONNX model folder) with its adapters, served by one of two backends
behind one API (no UI code here):
- "ort" (engine/ort_backend.py): plain onnxruntime with I/O binding, device-resident adapters, CUDA graph
  decode and continuous batching with a LoRA per batch row. Picked on CUDA for pipeline-built bases
  (rows layout) when torch is importable.
- "og" (engine/og_backend.py): onnxruntime-genai, a generator per request. Everywhere else (the CPU,
  CPU Spaces, older bases) and the fallback.
STUDIO_BACKEND=og|ort (or backend=) forces one. Adapters: engine/registry.py. Streaming to a UI on its
own thread, coalesced: start()/start_compare() -> engine/live.py.
"""
from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import artifacts as lib
from .live import Live
from .registry import Registry
from .sampling import BASE, SamplingParams, Stats, count_token, finish  # noqa: F401
from .templates import load_hf_chat_template, render_chat_template  # noqa: F401

BACKENDS = ("auto", "og", "ort")


class _Frames:
    """An ort backend request's frames with cancel(): the decode loop drops its rows after the current
    step, without waiting for the reader to take another frame (engine/live.py)."""

    def __init__(self, gen, reqs: list):
        self._gen, self.reqs = gen, reqs

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()

    def cancel(self) -> None:
        for r in self.reqs:
            r.cancel()


class _Stop:
    """An og request's cancel: the backend looks at the event between the pieces of a prompt and the steps."""

    def __init__(self):
        self.event = threading.Event()

    def cancel(self) -> None:
        self.event.set()


def _cuda_usable() -> bool:
    try:
        import onnxruntime as ort
        return "CUDAExecutionProvider" in ort.get_available_providers()
    except Exception:  # pragma: no cover
        return False


def _release_torch_cache() -> None:
    """Device memory a failed ort backend left in torch's cache goes back to the device (for og)."""
    import sys
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def pick_backend(backend: str, provider: str, base: lib.BaseInfo) -> tuple[str, str]:
    """(backend, why) for a base: ort on CUDA for rows-layout bases (torch importable), else og."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend != "auto":
        return backend, "forced"
    if provider == "cpu" or not _cuda_usable():
        return "og", "no CUDA"
    if not base.rows:
        return "og", "base has no per-row LoRA dim (built before layout 3)"
    if importlib.util.find_spec("torch") is None:  # the ort backend keeps its buffers in torch tensors
        return "og", "torch not installed"
    return "ort", "CUDA + rows layout"


FPA_CHOICES = {"auto": None, "0": "off", "1": "all", "batched": "batched"}


def _fused_choice(want: str, device: str) -> str:
    """STUDIO_LORA_FUSED -> the ort backend's lora_fused. auto: the fused LoRA op on CUDA, where it replaces four
    kernel launches per LoRA target with one (falling back to the MatMul chain, with the reason in the stats,
    when it cannot be built or loaded); the chain on the CPU (onnxruntime's MLAS GEMMs). on: the op, or fail.
    off: the chain."""
    if want not in ("auto", "on", "off"):
        raise ValueError(f"STUDIO_LORA_FUSED must be auto, on or off, not {want!r}")
    return want if want != "auto" else ("try" if device == "cuda" else "off")


def _fpa_choice(want: str, meta: dict, device: str = "cuda") -> str:
    """STUDIO_FPA_INTB -> the ort backend's int4 kernel mode. auto: "batched" for bases built for onnxruntime's
    fpA_intB kernels (fpa_intb_eligible: one-row steps and the prefill on its own kernels, steps of 2+ rows on
    fpA_intB; H200 run 6 in bench/NOTES.md), else "off". 0: off. 1: fpA_intB for every run. batched: forced."""
    from .ort_backend import fpa_intb_eligible
    if want not in FPA_CHOICES:
        raise ValueError(f"STUDIO_FPA_INTB must be one of {', '.join(FPA_CHOICES)}, not {want!r}")
    if want == "auto":
        return "batched" if device == "cuda" and fpa_intb_eligible(meta) else "off"
    return FPA_CHOICES[want]


class ChatEngine:
    def __init__(self, model_dir: str | os.PathLike, adapters_dir: str | os.PathLike | None,
                 provider: str = "auto", cuda_graph: bool | None = None, backend: str | None = None,
                 max_rows: int | None = None, batch_invariant: bool | None = None):
        self.model_dir = Path(model_dir)
        # CUDA graph: on by default on CUDA (measured on an H200: +23-28 % decode with an adapter
        # active on og, bench/results/h200-*); STUDIO_CUDA_GRAPH=0 turns it off.
        self.cuda_graph = (os.environ.get("STUDIO_CUDA_GRAPH", "1") != "0") if cuda_graph is None \
            else bool(cuda_graph)
        if provider not in ("auto", "cpu", "cuda"):
            raise ValueError(f"provider must be auto, cpu or cuda, not {provider!r}")
        self.base = lib.read_base(self.model_dir)
        want = backend or os.environ.get("STUDIO_BACKEND") or "auto"
        self.backend_name, self.backend_why = pick_backend(want, provider, self.base)
        self.backend = None
        if self.backend_name == "ort":
            try:
                self.backend = self._ort_backend(provider, max_rows, batch_invariant)
            except Exception as e:
                if want != "auto":
                    raise
                # picked by itself and not working here: serve with onnxruntime-genai, and say why
                self.backend_name, self.backend_why = "og", f"ort backend failed: {type(e).__name__}: {str(e)[:300]}"
                warnings.warn(f"{self.model_dir.name}: {self.backend_why}; serving with onnxruntime-genai")
                _release_torch_cache()
        if self.backend is None:
            from .og_backend import OgBackend
            self.backend = OgBackend(self.model_dir, provider, self.cuda_graph)
        self.provider = self.backend.provider
        self.tokenizer = self.backend.tokenizer
        self.context_length = self.backend.context_length
        self.eos_ids = {int(x) for x in self.tokenizer.eos_token_ids}
        self._hf_template = load_hf_chat_template(self.model_dir)
        self._tok_lock = threading.Lock()
        self.registry = Registry(self.base, adapters_dir, self.backend.load_adapter, self.backend.unload_adapter,
                                 "onnxruntime-genai" if self.backend_name == "og" else "the ort backend")
        self.adapters_dir = self.registry.adapters_dir
        # compare mode: one batch of 2. ort: two rows of the continuous batch (CUDA graph or not). og: a
        # pair adapter on a rows-layout base, not under CUDA graph (onnxruntime's GroupQueryAttention
        # refuses a batch-of-2 prompt on og's static KV buffers); there compare interleaves.
        graph = self.provider == "cuda" and self.cuda_graph
        interleave = os.environ.get("STUDIO_COMPARE", "batch") == "interleave"
        if self.backend_name == "ort":
            self.compare_batched, self.compare_note = True, ""
        else:
            self.compare_batched = self.base.rows and not graph and not interleave
            self.compare_note = "" if self.compare_batched else (
                "interleaved: this base has no per-row LoRA dim (built before layout 3)" if not self.base.rows
                else "interleaved: CUDA graph on (a batch-of-2 prompt is refused under it)" if graph
                else "interleaved (STUDIO_COMPARE=interleave)")
        self.refresh()

    def _ort_backend(self, provider: str, max_rows, batch_invariant):
        from .ort_backend import OrtBackend
        device = "cpu" if provider == "cpu" or (provider == "auto" and not _cuda_usable()) else "cuda"
        env = os.environ.get
        b = OrtBackend(self.model_dir, device, self.cuda_graph,
                       max_rows=int(max_rows or env("STUDIO_MAX_ROWS", "8")),
                       max_length=int(env("STUDIO_MAX_LENGTH", "4096")),
                       rank=int(env("STUDIO_LORA_RANK", "64")),
                       adapter_budget=int(env("STUDIO_ADAPTER_BUDGET", "32")),
                       batch_invariant=bool(int(env("STUDIO_BATCH_INVARIANT", "0")))
                       if batch_invariant is None else batch_invariant,
                       base_rank0=env("STUDIO_BASE_RANK0", "1") != "0",
                       # fpA_intB int4 kernels (_fpa_choice): auto = for the batched steps of bases built for them
                       fpa_intb=_fpa_choice(env("STUDIO_FPA_INTB", "auto"), self.base.meta, device),
                       # decode batch sizes, e.g. "1,2,4,8" (default: ort_backend.default_buckets)
                       buckets=env("STUDIO_BUCKETS", "").split(",") if env("STUDIO_BUCKETS") else None,
                       # A slots rank-first (1) or K-first (0); auto: rank-first with the fused op, else K-first
                       lora_a_t={"1": True, "0": False}.get(env("STUDIO_LORA_A_T", "auto")),
                       lora_fused=_fused_choice(env("STUDIO_LORA_FUSED", "auto"), device))
        try:  # a few tokens through prefill and decode (on CUDA: the batch-1 graph captured and replayed)
            b.selftest()
        except Exception:
            b.close()
            raise
        return b

    # -- library
    def variants(self) -> list[str]:
        return self.registry.variants()

    def refused(self) -> list[tuple[str, str]]:
        return self.registry.refused()

    def refresh(self) -> dict:
        return self.registry.refresh()

    def serving_stats(self) -> dict:
        """What the backend did so far (ort: steps, batch sizes, adapter reads/evictions, slot writes)."""
        return {"backend": self.backend_name, "why": self.backend_why, **self.backend.stats()}

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

    # -- generation
    def _stats(self, variant: str, ids, note: str) -> Stats:
        return Stats(variant=variant, provider=self.provider, backend=self.backend_name,
                     lora_kernels=getattr(self.backend, "lora_kernels", ""),
                     prompt_tokens=len(ids), note=note)

    def _request(self, messages, variant: str, params: SamplingParams, seed: int | None = None):
        """A started request: an iterator of (text_so_far, Stats). Errors about the request (unknown
        variant, empty prompt) are raised here; on the ort backend the request is already queued."""
        params.validate()
        self.registry.check(variant)
        ids, note = self.encode(messages, params.max_new_tokens)
        seed = params.request_seed() if seed is None else seed
        if self.backend_name == "ort":
            return self._ort_frames(ids, note, variant, params, seed)
        return self._og_frames(ids, note, variant, params, seed)

    def _og_frames(self, ids, note, variant, params, seed) -> "_Frames":
        """The og request's frames; cancel() stops it between two pieces of its prompt too (a long prompt on the
        CPU is read in pieces: a request whose reader went away stops within one piece, not at the end)."""
        stop = _Stop()

        def frames():
            t0 = time.perf_counter()
            held = self.registry.acquire(variant)
            try:
                limit = min(params.max_new_tokens, self.context_length - len(ids))
                tokens = ((tok, now, "eos") for tok, now in
                          self.backend.run(ids, held and held.key, params, seed, self.eos_ids, limit, stop.event))
                yield from self._text_frames(tokens, variant, ids, note, params, t0)
            finally:
                self.registry.release(held)
        return _Frames(frames(), [stop])

    def _text_frames(self, tokens, variant, ids, note, params, t0) -> Iterator[tuple[str, Stats]]:
        """(text so far, Stats) per new token, then the final frame. `tokens` yields (token, time,
        reason); a None token ends the answer with that reason ("error ..." raises)."""
        stream = self.tokenizer.create_stream()
        st = self._stats(variant, ids, note)
        text = ""
        for tok, now, reason in tokens:
            if tok is None:
                if reason.startswith("error"):
                    raise RuntimeError(reason)
                st.finish_reason = reason
                break
            count_token(st, now, t0)
            text += stream.decode(tok)
            yield text, replace(st)
        finish(st, params)
        st.seconds = time.perf_counter() - t0
        yield text, st

    def _ort_frames(self, ids, note, variant, params, seed):
        from .ort_backend import Request
        t0 = time.perf_counter()
        held = self.registry.acquire(variant)
        limit = min(params.max_new_tokens, self.context_length - len(ids))
        try:
            req = self.backend.submit(Request(ids, held and held.key, held and held.info.path, params, seed, limit))
        except Exception:
            self.registry.release(held)
            raise

        def frames():
            try:
                # the decode thread's queue: (token, time, reason), ending with a None token
                yield from self._text_frames(iter(req.out.get, object()), variant, ids, note, params, t0)
            finally:
                req.cancel()  # closed early: the row ends at the next step
                self.registry.release(held)
        return _Frames(frames(), [req])

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

    def start(self, messages, variant: str = BASE, params: SamplingParams | None = None) -> Live:
        """stream() decoding on its own thread; read it with Live.frames() (coalesced)."""
        return Live(self.stream(messages, variant, params))

    def start_compare(self, messages, variant_a: str, variant_b: str, params: SamplingParams | None = None
                      ) -> Live:
        return Live(self.compare(messages, variant_a, variant_b, params))

    def compare(self, messages, variant_a: str, variant_b: str, params: SamplingParams | None = None
                ) -> Iterator[tuple[str, str, Stats, Stats]]:
        """Both variants on the same prompt, token by token: yields (text_a, text_b, stats_a, stats_b).

        ort backend: two rows of the continuous batch (each row its own LoRA), decoded in the same steps.
        og backend on a rows-layout base: ONE generator with a batch of 2 and a pair adapter stacking the
        two LoRAs on the per-row axis (the base side is a zero row). Elsewhere (older bases, CUDA graph on
        og, STUDIO_COMPARE=interleave): two generators stepped in turn. Greedy answers equal the ones each
        variant gives alone (up to float rounding on a GPU). The same variant twice runs once.
        """
        params = params or SamplingParams()
        seed = params.request_seed()
        if variant_a == variant_b:
            ga = self._request(messages, variant_a, params, seed)
            return _Frames(((t, t, s, replace(s)) for t, s in ga), getattr(ga, "reqs", []))
        if self.backend_name == "og" and self.compare_batched:
            params.validate()
            self.registry.check(variant_a)
            self.registry.check(variant_b)
            ids, note = self.encode(messages, params.max_new_tokens)
            chunk = self.backend.compare_chunk()
            if chunk and len(ids) > chunk:
                # a batch of 2 reads its prompt in one call (onnxruntime-genai takes one append for more than
                # one row), holding Python's lock all along: a long prompt is compared interleaved instead,
                # each side reading it in pieces (engine/og_backend.py)
                return self._interleaved(messages, variant_a, variant_b, params, seed,
                                         f"interleaved: a prompt over {chunk} tokens is read in pieces")
            return self._pair_or_fallback(messages, ids, note, variant_a, variant_b, params, seed)
        return self._interleaved(messages, variant_a, variant_b, params, seed)

    def _interleaved(self, messages, va, vb, params, seed, why: str = ""):
        """Two requests stepped in turn; `why` (why not one batch) is added to the right-hand Stats.note."""
        ga = self._request(messages, va, params, seed)
        gb = self._request(messages, vb, params, seed)
        frames = self._interleave(ga, gb, va, vb)

        def noted():
            try:
                for ta, tb, sa, sb in frames:
                    yield ta, tb, sa, replace(sb, note="; ".join(x for x in (sb.note, why) if x))
            finally:
                frames.close()
        return _Frames(noted() if why else frames, getattr(ga, "reqs", []) + getattr(gb, "reqs", []))

    def _pair_or_fallback(self, messages, ids, note, va, vb, params, seed):
        """The og batched compare; if it fails before its first token, this request falls back to
        interleaving, with the reason in its right-hand Stats.note. Nothing global changes: one
        request's failure (a bad value, an adapter that vanished) never changes how others run."""
        it = self._run_pair(ids, note, va, vb, params, seed)
        try:
            first = next(it)
        except StopIteration:
            return
        except Exception as e:
            it.close()
            yield from self._interleaved(messages, va, vb, params, seed,
                                         f"interleaved: the batch of 2 failed ({type(e).__name__}: {str(e)[:200]})")
            return
        yield first
        yield from it

    def _run_pair(self, ids, note, va, vb, params, seed):
        from .og_backend import pair_frames
        t0 = time.perf_counter()
        pair = self.registry.acquire_pair(va, vb)
        try:
            limit = min(params.max_new_tokens, self.context_length - len(ids))
            steps = self.backend.run_pair(ids, pair.key, params, seed)
            try:
                for frame in pair_frames(steps, self.tokenizer, self.eos_ids, va, vb, self.provider, len(ids),
                                         note, params, limit, t0):
                    frame[2].backend = frame[3].backend = self.backend_name
                    yield frame
            finally:
                steps.close()
        finally:
            self.registry.release_pair(pair)

    def _interleave(self, ga, gb, va, vb):
        ta = tb = ""
        sa, sb = self._stats(va, [], ""), self._stats(vb, [], "")
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
        self.registry.close()
        self.backend.close()
