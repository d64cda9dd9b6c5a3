"""Request parameters, per-request statistics and token selection shared by both backends.

`Sampler` picks the next token from one row of logits the way onnxruntime-genai 0.18 does: repetition
penalty over the prompt and the tokens so far (a positive logit divided by it, a negative one multiplied),
then greedy (argmax) or temperature -> top-k -> top-p over the softmax, drawn from a generator seeded
by the request's seed. Greedy choices equal onnxruntime-genai's; sampled ones follow the same
distribution (the random streams differ)."""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

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
    tokens_per_s: float = 0.0         # engine decode rate after the first token
    seconds: float = 0.0              # request start -> now (wall time)
    variant: str = BASE
    provider: str = "cpu"
    backend: str = "og"               # "og" (onnxruntime-genai) | "ort" (plain onnxruntime, engine/ort_backend.py)
    lora_kernels: str = ""            # ort: "fused" (engine/fused_lora's op) | "chain" (MatMul, MatMul, Add)
    prompt_tokens: int = 0
    finished: bool = False
    finish_reason: str = ""           # "eos" | "length" | "context" | "cancelled" | "" while running
    note: str = ""                    # e.g. the prompt was cut from the left


def count_token(st: Stats, now: float, t0: float) -> None:
    """Account one new (non-EOS) token of a request started at t0: first-token time, count, decode rate."""
    if st.tokens == 0:
        st.ttft_s = now - t0
    st.tokens += 1
    st.seconds = now - t0
    decode = st.seconds - st.ttft_s
    st.tokens_per_s = (st.tokens - 1) / decode if st.tokens > 1 and decode > 0 else 0.0


def finish(st: Stats, params: SamplingParams) -> None:
    if not st.finish_reason:
        st.finish_reason = "length" if st.tokens >= params.max_new_tokens else "context"
    st.finished = True


class Sampler:
    """The token choice of one request (see the module docstring)."""

    def __init__(self, params: SamplingParams, seed: int, prompt: list[int]):
        self.p = params
        self.rng = np.random.default_rng(seed)
        self.seen = np.zeros(0, dtype=np.int64)
        if params.repetition_penalty != 1.0:
            self.seen = np.unique(np.asarray(prompt, dtype=np.int64))

    @property
    def plain_greedy(self) -> bool:
        """Greedy without a repetition penalty: the argmax of the raw logits, which a caller may take on
        the device instead of calling this sampler (it keeps no state then)."""
        return self.p.greedy and self.p.repetition_penalty == 1.0

    def __call__(self, logits: np.ndarray) -> int:
        p = self.p
        x = np.asarray(logits, dtype=np.float32)
        if p.repetition_penalty != 1.0 and self.seen.size:
            x = x.copy()
            v = x[self.seen]
            x[self.seen] = np.where(v > 0, v / p.repetition_penalty, v * p.repetition_penalty)
        if p.greedy:
            tok = int(np.argmax(x))
        else:
            z = x.astype(np.float64) / p.temperature
            order = np.argsort(-z, kind="stable")
            if p.top_k and p.top_k < order.size:
                order = order[:p.top_k]
            w = np.exp(z[order] - z[order[0]])
            w /= w.sum()
            if p.top_p < 1.0:
                keep = int(np.searchsorted(np.cumsum(w), p.top_p) + 1)
                order, w = order[:keep], w[:keep] / w[:keep].sum()
            tok = int(order[self.rng.choice(order.size, p=w)])
        if p.repetition_penalty != 1.0 and tok not in self.seen:
            self.seen = np.append(self.seen, tok)
        return tok
