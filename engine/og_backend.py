"""The onnxruntime-genai backend: one og.Model + one og.Adapters serving the base and every loaded
adapter; a fresh og.Generator per request (adapters switch per request without reloading anything).
The portable one: the CPU, CPU Spaces, CUDA bases without the rows layout, and the fallback."""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime_genai as og

from .sampling import SamplingParams, Stats, count_token, finish

# Prompt pieces of all requests, one at a time, with a yield after each: with several streams reading long
# prompts, the reading threads handed the interpreter lock to each other and the event loop waited through several
# pieces in a row (longest stall of a ticker: 2 streams 129 ms, 4 streams 274 ms; with this 27 and 19 ms, the same
# tokens and wall time; red team pass 15)
_PREFILL = threading.Lock()
CHUNK_AUTO = -1             # prefill_chunk: pieces sized by time
CHUNK_MIN, CHUNK_MAX = 8, 512


class OgBackend:
    name = "og"

    def __init__(self, model_dir: Path, provider: str, cuda_graph: bool):
        self.model_dir = Path(model_dir)
        self.cuda_graph = cuda_graph
        self.model, self.provider = self._load_model(provider)
        self.tokenizer = og.Tokenizer(self.model)
        self.adapters = og.Adapters(self.model)
        # On the CPU a prompt is read in pieces: onnxruntime-genai holds Python's lock for the whole of each
        # call, so one long prompt read at once froze every other request of the server (0.66 s for 1,500
        # tokens on the default model; tens of seconds on a 3-4 B one). The pieces are sized by time: each
        # call aims at STUDIO_PREFILL_MS (20 ms) from the rate the previous one reached, so the stalls stay short
        # on any model (a fixed 128 tokens still stalled the server ~1 s on the default model with two streams,
        # and would take seconds per piece on a 3-4 B one; red team pass 14). Same tokens as at once.
        # STUDIO_PREFILL_CHUNK=N fixes the piece at N tokens (0: at once). (On CUDA the prompt is read at once.)
        fixed = os.environ.get("STUDIO_PREFILL_CHUNK", "auto")
        self.prefill_chunk = 0 if self.provider != "cpu" else (
            CHUNK_AUTO if fixed == "auto" else max(0, int(fixed)))
        self.prefill_target_s = max(1.0, float(os.environ.get("STUDIO_PREFILL_MS", "20"))) / 1000
        self._prefill_rate = None  # tokens per second of the last prompt's first piece (auto)
        gcfg = json.loads((self.model_dir / "genai_config.json").read_text())
        self.context_length = int(gcfg["model"].get("context_length")
                                  or gcfg.get("search", {}).get("max_length") or 2048)

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

    # -- adapters (the registry calls these)
    def load_adapter(self, path: Path, key: str) -> None:
        self.adapters.load(str(path), key)

    def unload_adapter(self, key: str) -> None:
        self.adapters.unload(key)

    def params(self, n_prompt: int, p: SamplingParams, seed: int, batch: int = 1) -> og.GeneratorParams:
        gp = og.GeneratorParams(self.model)
        opts = dict(max_length=min(self.context_length, n_prompt + p.max_new_tokens),
                    repetition_penalty=float(p.repetition_penalty))
        if p.greedy:
            opts.update(do_sample=False)
        else:
            opts.update(do_sample=True, temperature=float(p.temperature), top_p=float(p.top_p),
                        top_k=int(p.top_k), random_seed=int(seed))
        if batch > 1:
            opts.update(batch_size=batch)
        gp.set_search_options(**opts)
        return gp

    # -- generation: token ids in, (token or None at the end, time) out
    def run(self, ids, key: str | None, params: SamplingParams, seed: int, eos: set, limit: int, stop=None):
        """One request in the calling thread: yields each new token id (EOS excluded) as (tok, now). `stop` (a
        threading.Event), once set, ends it between two pieces of the prompt or two steps."""
        gen = og.Generator(self.model, self.params(len(ids), params, seed))
        stopped = stop.is_set if stop is not None else (lambda: False)
        try:
            if key is not None:
                gen.set_active_adapter(self.adapters, key)
            if self.prefill_chunk == 0:
                gen.append_tokens(ids)
            elif not self._read_in_pieces(gen, ids, stopped):
                return
            n = 0
            while n < limit and not gen.is_done() and not stopped():
                gen.generate_next_token()
                tok = int(gen.get_next_tokens()[0])
                now = time.perf_counter()
                if tok in eos:
                    yield None, now
                    return
                n += 1
                yield tok, now
        finally:
            del gen

    def _read_in_pieces(self, gen, ids, stopped) -> bool:
        """The prompt appended in pieces (_piece), one piece of any request at a time, the others (the event loop)
        running between two; False when `stopped` before the end."""
        i, rate = 0, self._prefill_rate
        while i < len(ids):
            if stopped():
                return False
            step = self._piece(len(ids) - i, rate)
            with _PREFILL:
                t = time.perf_counter()
                gen.append_tokens(ids[i:i + step])
                rate = step / max(time.perf_counter() - t, 1e-5)  # (slower further into the prompt)
            if i == 0:
                self._prefill_rate = rate  # a prompt's first piece: where the next one starts
            i += step
            time.sleep(0)
        return True

    def _piece(self, left: int, rate: float | None) -> int:
        """How many prompt tokens the next append_tokens call takes (all that is left when not in pieces); `rate`:
        tokens per second of the previous piece (auto)."""
        if self.prefill_chunk == 0:
            return left
        if self.prefill_chunk > 0:
            return min(left, self.prefill_chunk)
        n = 64 if rate is None else int(rate * self.prefill_target_s)
        return min(left, max(CHUNK_MIN, min(CHUNK_MAX, n)))

    def compare_chunk(self) -> int:
        """Prompts longer than this many tokens are compared interleaved: a batch of 2 takes its prompt in one
        call, and up to two pieces' worth (both rows: about 4 x STUDIO_PREFILL_MS) is let through as one batch."""
        if self.prefill_chunk == CHUNK_AUTO:
            return 2 * self._piece(1 << 30, self._prefill_rate)
        return self.prefill_chunk

    def run_pair(self, ids, pair_key: str, params: SamplingParams, seed: int):
        """A batch of 2 with a pair adapter: yields ([tok_row0, tok_row1], now) per step."""
        gp = self.params(len(ids), params, seed, batch=2)
        gen = og.Generator(self.model, gp)
        try:
            gen.set_active_adapter(self.adapters, pair_key)
            gen.append_tokens(np.array([ids, ids], dtype=np.int32))
            while not gen.is_done():
                gen.generate_next_token()
                yield [int(x) for x in gen.get_next_tokens()], time.perf_counter()
        finally:
            del gen

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def pair_frames(steps, tokenizer, eos: set, va: str, vb: str, provider: str, n_prompt: int, note: str,
                params: SamplingParams, limit: int, t0: float):
    """(text_a, text_b, stats_a, stats_b) frames from run_pair's steps."""
    streams = [tokenizer.create_stream(), tokenizer.create_stream()]
    st = [Stats(variant=v, provider=provider, prompt_tokens=n_prompt, note=note) for v in (va, vb)]
    texts = ["", ""]
    for toks, now in steps:
        for r, s in enumerate(st):
            if s.finished:
                continue
            if toks[r] in eos:
                s.finish_reason = "eos"
                finish(s, params)
                continue
            count_token(s, now, t0)
            texts[r] += streams[r].decode(toks[r])
            if s.tokens >= limit:
                finish(s, params)
        yield texts[0], texts[1], replace(st[0]), replace(st[1])
        if all(s.finished for s in st):
            break
    end = time.perf_counter() - t0
    for s in st:
        finish(s, params)
        s.seconds = s.seconds or end
    yield texts[0], texts[1], st[0], st[1]
