"""The "I/O binding" lever: a greedy decode loop with plain onnxruntime (no onnxruntime-genai) on a model
folder, feeding the KV cache / adapter tensors from the host every step or keeping them on the device,
against og itself on the same model, base and with an adapter active.

  python bench/iobinding.py --model MODEL_DIR --adapter ADAPTER.onnx_adapter --device cuda \
      [--tokens 256] [--reps 3] [--modes host,iobinding,iobinding_host_adapter] [--kv shared] [--threads 0] \
      --out bench/results/iobinding.json

Modes (raw onnxruntime.InferenceSession, CUDA EP with --device cuda, CPU EP otherwise):
  host                    every step feeds numpy arrays (input ids, mask, the whole past KV, the adapter
                          tensors) and fetches logits + every present KV as numpy: a host round trip of the
                          whole cache per step (what a naive loop does).
  iobinding               KV cache, input ids and adapter tensors are OrtValues on the device, bound once
                          (io_binding); with --kv shared (default, like og's past_present_share_buffer) past
                          and present are ONE preallocated [1, kv_heads, prompt+N, head_size] buffer per
                          layer, bound as input and output once; with --kv grow the presents ORT allocates
                          on the device are bound as the next step's past. Per step only the new token id
                          (an 8-byte update_inplace into a device OrtValue), the attention mask (int64
                          [1, total], bound from the host: a few hundred bytes) go up, and only the logits
                          come down (logits are bound to the CPU: ORT copies the [1, 1, vocab] logits of the
                          one decode position to the host; the argmax is numpy on the host, ~10 us).
  iobinding_host_adapter  like iobinding, but the adapter tensors are bound from host numpy arrays every
                          step (bind_cpu_input): what a per-step adapter copy costs.
  og / og_graph           onnxruntime-genai on the same folder (C.og_model, CUDA graph off / on; og_graph
                          only on cuda), the adapter loaded with og.Adapters(model).load(file, 'a').

Prompt: 16 fixed token ids (100..115); N = --tokens new tokens. Timing: the decode
steps only (the prefill step and og's first generate_next_token, which only picks the token from the
prefill logits, are not timed): tokens/s = (N - 1) / seconds, median of --reps after one warm-up run.
og makes exactly N tokens because min_length = max_length (C.og_generator), i.e. og never picks an EOS
token; the raw loop masks the EOS ids of genai_config the same way before its argmax.
Correctness: the greedy tokens of every raw mode are compared with og's (graph off) for the same variant;
on the CPU they must be equal (exit status 1 otherwise), on CUDA `tokens_equal_og` and the first mismatch
index are recorded (fp16 kernels may legitimately diverge after a near-tie).
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import common as C  # noqa: E402
from artifacts import read_adapter_arrays  # noqa: E402

MODES = ("host", "iobinding", "iobinding_host_adapter")
NP_DTYPE = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
            "tensor(int32)": np.int32, "tensor(double)": np.float64}
PROMPT = list(range(100, 116))


def is_lora(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name


class Loop:
    """A greedy decode loop with a plain InferenceSession on an og model folder."""

    def __init__(self, model_dir: Path, device: str, threads: int = 0):
        cfg = json.loads((model_dir / "genai_config.json").read_text())
        dec = cfg["model"]["decoder"]
        self.cfg = cfg
        self.device = device
        self.dev = "cuda" if device == "cuda" else "cpu"
        so = ort.SessionOptions()
        so.log_severity_level = 3  # the "initializer appears in graph inputs" warnings of the LoRA slots
        so.intra_op_num_threads = threads
        providers = ([("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"] if device == "cuda"
                     else ["CPUExecutionProvider"])
        self.sess = ort.InferenceSession(str(model_dir / dec["filename"]), so, providers=providers)
        if device == "cuda" and "CUDAExecutionProvider" not in self.sess.get_providers():
            raise SystemExit(f"--device cuda but the session has providers {self.sess.get_providers()}")
        names = dec["inputs"]
        onames = dec["outputs"]
        self.L = dec["num_hidden_layers"]
        self.kvh = dec["num_key_value_heads"]
        self.hs = dec["head_size"]
        self.ids_name = names.get("input_ids", "input_ids")
        self.mask_name = names.get("attention_mask", "attention_mask")
        self.pos_name = names.get("position_ids", "position_ids")
        self.logits_name = onames.get("logits", "logits")
        self.past = [names["past_key_names"] % i for i in range(self.L)] + \
                    [names["past_value_names"] % i for i in range(self.L)]
        self.present = [onames["present_key_names"] % i for i in range(self.L)] + \
                       [onames["present_value_names"] % i for i in range(self.L)]
        listed = {i.name: i for i in self.sess.get_inputs()}
        self.overridable = {i.name: i for i in self.sess.get_overridable_initializers()}
        self.kv_type = listed[self.past[0]].type
        if self.kv_type not in NP_DTYPE:
            raise SystemExit(f"KV dtype {self.kv_type} has no numpy type (bfloat16?): not supported here")
        self.kv_dtype = NP_DTYPE[self.kv_type]
        self.logits_type = next(o.type for o in self.sess.get_outputs() if o.name == self.logits_name)
        self.has_pos = self.pos_name in listed
        known = {self.ids_name, self.mask_name, *self.past} | ({self.pos_name} if self.has_pos else set())
        extra = [n for n in listed if n not in known and not is_lora(n)]
        if extra:
            raise SystemExit(f"model inputs this loop does not know how to feed: {extra}")
        self.lora_inputs = sorted(n for n in list(listed) + list(self.overridable) if is_lora(n))
        eos = cfg["model"].get("eos_token_id", [])
        self.eos = [eos] if isinstance(eos, int) else list(eos)

    def info(self) -> dict:
        return {"providers": self.sess.get_providers(), "kv_dtype": self.kv_type, "logits_dtype": self.logits_type,
                "layers": self.L, "kv_heads": self.kvh, "head_size": self.hs, "lora_inputs": len(self.lora_inputs),
                "lora_inputs_listed": sum(1 for i in self.sess.get_inputs() if is_lora(i.name)),
                "lora_inputs_overridable": sum(1 for n in self.overridable if is_lora(n)),
                "position_ids": self.has_pos, "eos_masked": self.eos}

    def check_adapter(self, params: dict[str, np.ndarray]) -> dict:
        unknown = [k for k in params if k not in self.lora_inputs]
        if unknown:
            raise SystemExit(f"adapter tensors that are no input of the model: {unknown[:4]} ...")
        dts = {str(v.dtype) for v in params.values()}
        if dts != {np.dtype(self.kv_dtype).name}:
            print(f"warning: adapter dtypes {dts} vs io dtype {self.kv_type}", flush=True)
        k0 = sorted(params)[0]
        return {"tensors": len(params), "of_lora_inputs": len(self.lora_inputs), "dtypes": sorted(dts),
                "example": {k0: list(params[k0].shape)}, "bytes": int(sum(v.nbytes for v in params.values()))}

    def pick(self, logits: np.ndarray) -> int:
        row = np.asarray(logits[0, -1], dtype=np.float32).copy()
        if self.eos:
            row[self.eos] = -np.inf  # og: min_length = max_length never lets EOS win
        return int(np.argmax(row))

    def _mask(self, t: int) -> np.ndarray:
        return np.ones((1, t), dtype=np.int64)

    def _pos(self, start: int, s: int) -> np.ndarray:
        return np.arange(start, start + s, dtype=np.int64)[None]

    # ------------------------------------------------------------ host: numpy in, numpy out
    def run_host(self, prompt: list[int], n: int, params: dict[str, np.ndarray]) -> tuple[list[int], float]:
        outs = [self.logits_name] + self.present
        past = {k: np.zeros((1, self.kvh, 0, self.hs), self.kv_dtype) for k in self.past}
        ids = np.array([prompt], dtype=np.int64)
        toks: list[int] = []
        t0 = 0.0
        for step in range(n):
            if step == 1:
                t0 = time.perf_counter()
            plen = 0 if step == 0 else len(prompt) + step - 1
            feeds = {self.ids_name: ids, self.mask_name: self._mask(plen + ids.shape[1]), **past, **params}
            if self.has_pos:
                feeds[self.pos_name] = self._pos(plen, ids.shape[1])
            res = self.sess.run(outs, feeds)
            tok = self.pick(res[0])
            toks.append(tok)
            past = dict(zip(self.past, res[1:]))
            ids = np.array([[tok]], dtype=np.int64)
        return toks, time.perf_counter() - t0

    # ------------------------------------------------------------ io binding: state on the device
    def run_bound(self, prompt: list[int], n: int, params: dict[str, np.ndarray], dev_params: dict,
                  host_adapter: bool, kv: str) -> tuple[list[int], float]:
        dev = self.dev
        b = self.sess.io_binding()
        b.bind_output(self.logits_name, "cpu")  # first: index 0 of get_outputs(); re-bound each step
        P = len(prompt)
        if kv == "shared":
            shape = (1, self.kvh, P + n, self.hs)
            bufs = [ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, self.kv_dtype), dev, 0) for _ in self.past]
            for pn, qn, v in zip(self.past, self.present, bufs):
                b.bind_ortvalue_input(pn, v)
                b.bind_ortvalue_output(qn, v)
        else:
            empty = np.zeros((1, self.kvh, 0, self.hs), self.kv_dtype)
            bufs = [ort.OrtValue.ortvalue_from_numpy(empty, dev, 0) for _ in self.past]
            for pn, v in zip(self.past, bufs):
                b.bind_ortvalue_input(pn, v)
        if not host_adapter:
            for k, v in dev_params.items():
                b.bind_ortvalue_input(k, v)
        ids_prompt = ort.OrtValue.ortvalue_from_numpy(np.array([prompt], dtype=np.int64), dev, 0)
        ids_one = ort.OrtValue.ortvalue_from_numpy(np.zeros((1, 1), dtype=np.int64), dev, 0)
        tok_host = np.zeros((1, 1), dtype=np.int64)
        toks: list[int] = []
        t0 = 0.0
        for step in range(n):
            if step == 1:
                t0 = time.perf_counter()
                b.bind_ortvalue_input(self.ids_name, ids_one)
            if step == 0:
                b.bind_ortvalue_input(self.ids_name, ids_prompt)
            s = P if step == 0 else 1
            plen = 0 if step == 0 else P + step - 1
            b.bind_cpu_input(self.mask_name, self._mask(plen + s))
            if self.has_pos:
                b.bind_cpu_input(self.pos_name, self._pos(plen, s))
            if host_adapter:  # a host OrtValue wrapping the numpy array (no copy): ORT copies it to the
                for k, v in params.items():  # device inside the run. (bind_cpu_input refuses overridable
                    b.bind_ortvalue_input(k, ort.OrtValue.ortvalue_from_numpy(v))  # initializers by name)
            b.bind_output(self.logits_name, "cpu")  # a fresh output (its shape changes after the prefill)
            if kv == "grow":
                for qn in self.present:
                    b.bind_output(qn, dev, 0)
            self.sess.run_with_iobinding(b)
            outs = b.get_outputs()
            tok = self.pick(outs[0].numpy())
            toks.append(tok)
            if kv == "grow":
                for pn, v in zip(self.past, outs[1:]):
                    b.bind_ortvalue_input(pn, v)
            tok_host[0, 0] = tok
            ids_one.update_inplace(tok_host)
        dt = time.perf_counter() - t0
        del bufs
        return toks, dt


def og_section(model_dir: Path, device: str, graph: bool, adapter: Path | None, n: int, reps: int) -> dict:
    import onnxruntime_genai as og
    model = C.og_model(model_dir, device, graph)
    ads = None
    if adapter:
        ads = og.Adapters(model)
        ads.load(str(adapter), "a")
    out = {}
    for variant in ["base"] + (["adapter"] if adapter else []):
        name = "a" if variant == "adapter" else None
        times, toks = [], None
        for r in range(reps + 1):
            gen = C.og_generator(model, PROMPT, n, ads, name)
            gen.generate_next_token()  # the first token, from the prefill's logits
            t0 = time.perf_counter()
            k = C.decode_rest(gen)
            dt = time.perf_counter() - t0
            seq = [int(x) for x in gen.get_sequence(0)][len(PROMPT):]
            del gen
            if r > 0:
                times.append(dt / k)
            if toks is not None and seq != toks:
                print(f"warning: og {variant} graph={graph}: tokens differ between repetitions", flush=True)
            toks = seq
        out[variant] = {"s_per_token": times, "tokens": toks, "decode_steps": k}
    del ads, model
    gc.collect()
    return out


def row(mode: str, variant: str, s_per_token: list[float], toks: list[int], ref: list[int] | None) -> dict:
    med = C.median(s_per_token)
    r = {"mode": mode, "variant": variant, "tok_s": round(1 / med, 1), "ms_per_token": round(1000 * med, 3),
         "spread_tok_s": [round(1 / x, 1) for x in s_per_token], "n_tokens": len(toks)}
    if ref is not None:
        mism = next((i for i, (x, y) in enumerate(zip(toks, ref)) if x != y), None)
        if mism is None and len(toks) != len(ref):
            mism = min(len(toks), len(ref))
        r["tokens_equal_og"] = mism is None
        r["first_mismatch"] = mism
    return r


def table(rows: list[dict]) -> str:
    base = {r["mode"]: r["ms_per_token"] for r in rows if r["variant"] == "base"}
    lines = ["| mode | variant | tokens/s | ms/token | adapter adds ms/token | tokens = og |", "|---|---|---|---|---|---|"]
    for r in rows:
        add = (f"{r['ms_per_token'] - base[r['mode']]:+.3f}" if r["variant"] == "adapter" and r["mode"] in base
               else "")
        eq = {True: "yes", False: f"no (from {r.get('first_mismatch')})",
              None: "(ref)" if r["mode"] == "og" else "-"}[r.get("tokens_equal_og")]
        lines.append(f"| {r['mode']} | {r['variant']} | {r['tok_s']:.1f} | {r['ms_per_token']:.3f} | {add} | {eq} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    ap.add_argument("--adapter", type=Path, help="an .onnx_adapter for this model (else: base only)")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--kv", choices=("shared", "grow"), default="shared",
                    help="KV cache of the iobinding modes: one max-length buffer bound as past and present "
                         "(shared, like og) or the presents fed back as the next past (grow)")
    ap.add_argument("--threads", type=int, default=0,
                    help="intra_op_num_threads of the raw session (0: onnxruntime's default; on a small CPU "
                         "box 1 avoids spinning threads fighting over the cores)")
    ap.add_argument("--no-og", action="store_true", help="skip the og rows (and the token check)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    modes = [m for m in a.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad:
        ap.error(f"unknown modes {bad}; choose from {MODES}")
    if a.tokens < 2:
        ap.error("--tokens must be at least 2 (the first one comes from the untimed prefill)")
    if a.device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            print("--device cuda but onnxruntime has no CUDAExecutionProvider", file=sys.stderr)
            return 2
    t_start = time.perf_counter()
    variants = ["base"] + (["adapter"] if a.adapter else [])
    res = {"info": C.device_info(a.device), "date": time.strftime("%Y-%m-%d"),
           "settings": {k: str(v) for k, v in vars(a).items()}, "prompt": PROMPT, "rows": []}
    ref: dict[str, list[int]] = {}
    if not a.no_og:
        for graph in ([False, True] if a.device == "cuda" else [False]):
            mode = "og_graph" if graph else "og"
            print(f"[{time.perf_counter() - t_start:6.1f}s] {mode}", flush=True)
            try:
                o = og_section(a.model, a.device, graph, a.adapter, a.tokens, a.reps)
            except Exception as e:  # noqa: BLE001
                res.setdefault("errors", {})[mode] = repr(e)
                print(f"{mode} failed: {e!r}", flush=True)
                continue
            for v in variants:
                if not graph:
                    ref[v] = o[v]["tokens"]
                    res.setdefault("og_tokens", {})[v] = o[v]["tokens"]
                res["rows"].append(row(mode, v, o[v]["s_per_token"], o[v]["tokens"], ref.get(v) if graph else None))
    loop = Loop(a.model, a.device, a.threads)
    res["model"] = loop.info()
    params: dict[str, np.ndarray] = {}
    dev_params: dict = {}
    if a.adapter:
        params = read_adapter_arrays(a.adapter)
        res["adapter"] = loop.check_adapter(params)
        dev_params = {k: ort.OrtValue.ortvalue_from_numpy(v, loop.dev, 0) for k, v in params.items()}
    for mode in modes:
        for v in variants:
            print(f"[{time.perf_counter() - t_start:6.1f}s] {mode} {v}", flush=True)
            p = params if v == "adapter" else {}
            dp = dev_params if v == "adapter" else {}
            times, toks = [], None
            for r in range(a.reps + 1):
                if mode == "host":
                    seq, dt = loop.run_host(PROMPT, a.tokens, p)
                else:
                    seq, dt = loop.run_bound(PROMPT, a.tokens, p, dp, mode == "iobinding_host_adapter", a.kv)
                if r > 0:
                    times.append(dt / (a.tokens - 1))
                if toks is not None and seq != toks:
                    print(f"warning: {mode} {v}: tokens differ between repetitions", flush=True)
                toks = seq
            res["rows"].append(row(mode, v, times, toks, ref.get(v)))
            res.setdefault("raw_tokens", {})[f"{mode} {v}"] = toks
    if a.adapter and "base" in ref and ref.get("adapter") == ref["base"]:
        res["note"] = "the adapter does not change og's greedy tokens here: the check does not tell the variants apart"
    res["seconds"] = round(time.perf_counter() - t_start, 1)
    if a.out:
        C.write_json(a.out, res)
    print(json.dumps(res["model"]))
    print(table(res["rows"]))
    if res.get("note"):
        print("note:", res["note"])
    bad = [f"{r['mode']} {r['variant']} (first mismatch {r['first_mismatch']})" for r in res["rows"]
           if r.get("tokens_equal_og") is False]
    if bad:
        print(("MISMATCH with og: " if a.device == "cpu" else "tokens differ from og (fp16, recorded): ")
              + "; ".join(bad))
        if a.device == "cpu":
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
