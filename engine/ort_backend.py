"""The CUDA backend on plain onnxruntime for pipeline-built bases (rows layout): one decode loop on its
own thread serving every request as a row of one continuous batch, each row with its own LoRA.

- I/O binding, every buffer allocated once (torch tensors on the device, bound by pointer):
  the KV cache as ONE shared past/present buffer per layer `[max_rows, kv_heads, max_length, head]`,
  a static attention mask `[max_rows, max_length]` (ones up to each row's position), the input ids,
  the logits, and per LoRA input a slot `[max_rows, K, rank]` / `[max_rows, rank, N]` (the rows layout:
  row r of the batch reads row r of every slot, docs/DESIGN.md "LoRA slot layout").
- Adapters are device-resident, read once (an LRU of at most `adapter_budget`; evicted ones are read
  again on demand). A request's adapter is copied device-to-device into its row's slots when the row
  changes owner (ranks padded with zeros, which is exact); the base is a zero row.
- Prefill row by row: the prompt runs as a batch of 1 bound to its row of the shared buffers (which
  GroupQueryAttention accepts; a batch-of-2 prompt with a shared past it refuses), with the run option
  gpu_graph_id=-1 (no graph). The session's graph applies the LM head to the last position only
  (last_position_logits): a prefill makes one row of logits, not one per prompt token.
- Decode: one step for all rows, batch padded to a bucket (1, 2, 4, 8, ...) that binds the first rows
  of the same buffers; on CUDA each bucket is one CUDA graph (enable_cuda_graph, gpu_graph_id=bucket),
  valid across adapter switches because the slots never move.
- int4 kernels (fpa_intb): onnxruntime's own MatMulNBits kernels, or its fpA_intB ones (bases built with
  onnx.symmetric + block_size 32). Measured on the H200 (3.82 B, bench/NOTES.md run 6), fpA_intB is slower
  for one row (3.04 vs 2.47 ms a step) and for the prefill, and much faster for batched rows (8 rows 3.77 vs
  5.03 ms). "batched" loads the model twice: the plain session runs the prefill and one-row steps, a second
  one with fpA_intB runs the steps of 2+ rows, on the same buffers (each session its own CUDA graphs).
- lora_a_t (STUDIO_LORA_A_T): the session runs a copy of the graph whose LoRA-A products read A transposed,
  [rows, r, K] (com.microsoft FusedMatMul, transB=1), and the A slots are laid out that way. Same arithmetic;
  on the GPU cuBLAS then gets a "T" weight operand for the [1, K] x [K, 16] product, which it may serve
  without the split-K pair of kernels it picks for the stored layout (bench/lora_gemm.py measures it). The
  files on disk are unchanged (the rewritten graph lives in memory; its weights are read from the folder).
  With the fused LoRA op (lora_fused) A is rank-first by default (the op LoraAddAT): a rank-16 adapter in
  rank-64 slots is then one contiguous block of A, where K-first it is 32 bytes of every 128.
- New requests join between steps (continuous batching); a finished or cancelled row frees its slot at
  once. Sampling per row with engine.sampling.Sampler (greedy equals onnxruntime-genai).
On the CPU the same loop runs with the CPU execution provider and no graph (tests/test_serving.py).
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import artifacts as lib
from . import fused_lora
from .fused_lora import RANK_INPUT
from .sampling import Sampler, SamplingParams

_NP = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
       "tensor(int32)": np.int32}


log = logging.getLogger(__name__)
_DEVICE_LOCK = threading.Lock()
_ENV_LOCK = threading.Lock()


FPA_MODES = ("off", "all", "batched")
FUSED_MODES = ("off", "try", "on")


def fpa_intb_eligible(meta: dict) -> bool:
    """Whether onnxruntime's fpA_intB int4 kernels can serve this base: the compact kernel set of the pip
    build takes fp16 weights in blocks of 32 without zero points only (a base built with onnx.symmetric and
    onnx.block_size 32 for CUDA). Measured: bench/results/int4-kernels-h200-2026-12-03.json."""
    return (meta.get("precision") == "int4" and meta.get("block_size") == 32 and bool(meta.get("symmetric"))
            and meta.get("execution_provider") == "cuda")


def default_buckets(max_rows: int, device: str) -> list[int]:
    """Decode batch sizes: powers of two up to max_rows. On CUDA without 2 (when 4 fits): onnxruntime's int4
    MatMulNBits kernels make a 2-row step cost more than a 4-row one (H200, 3.82 B: 3.7 vs 3.4 ms with base
    rows, 4.2 vs 4.0 with adapters; bench/results/raw/serving-2026-12-03-run5/batch-steps-*.json), so two
    rows (compare, two users) run in the 4-row graph."""
    b = sorted({min(2 ** i, max_rows) for i in range(max_rows.bit_length() + 1)})
    return [x for x in b if x != 2] if device == "cuda" and max_rows >= 4 else b


def check_buckets(buckets, max_rows: int) -> list[int]:
    """A bucket list as given (STUDIO_BUCKETS), sorted, with max_rows added so every batch fits one."""
    try:
        b = sorted({int(x) for x in buckets})
    except (TypeError, ValueError):
        raise ValueError(f"decode buckets must be whole numbers, not {buckets!r}") from None
    if not b or b[0] < 1 or b[-1] > max_rows:
        raise ValueError(f"decode buckets must lie in 1..{max_rows} (max rows), not {b}")
    return sorted(set(b) | {max_rows})


@contextmanager
def _ort_env(values: dict):
    """Environment variables set while a session loads, then restored: onnxruntime releases before the
    session config key ep.cuda.fpa_intb_gemm read only the process-wide ORT_FPA_INTB_GEMM, when each
    MatMulNBits kernel is created; setting it for the load alone keeps it from other sessions (the og
    backend in the same process)."""
    if not values:
        yield
        return
    with _ENV_LOCK:
        old = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def is_lora(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name


def graph_with_a_transposed(path: Path) -> bytes:
    """The model at `path` (graph only; its weights stay in their external file) with every LoRA-A input
    [rows, K, r] taken as [rows, r, K]: each MatMul(x, A) becomes FusedMatMul(x, A, transB=1), and the
    rank-0 default initializers are reshaped. Raises ValueError when an A input feeds anything else."""
    import onnx
    from onnx import helper
    m = onnx.load(str(path), load_external_data=False)
    g = m.graph
    names = {i.name for i in g.input if ".lora_A." in i.name}
    if not names:
        raise ValueError("the graph has no LoRA-A inputs")
    done = 0
    for n in g.node:
        hits = [j for j, x in enumerate(n.input) if x in names]
        if not hits:
            continue
        if n.op_type != "MatMul" or hits != [1]:
            raise ValueError(f"LoRA-A input {n.input[hits[0]]} feeds {n.op_type} {n.name}: expected a MatMul weight")
        new = helper.make_node("FusedMatMul", list(n.input), list(n.output), name=n.name, domain="com.microsoft",
                               transB=1)
        n.CopyFrom(new)
        done += 1
    fused_lora.transpose_a_inputs(g, names)
    if not any(o.domain == "com.microsoft" for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    log.info("LoRA-A transposed in %d MatMul nodes", done)
    return m.SerializeToString()


def last_position_logits(data: bytes | None, path: Path) -> bytes:
    """The model (`data`, or the graph at `path`; weights stay in their external file) with its LM head applied to
    the last position only: a Slice [:, -1:] on the head's input, and `logits` declared [batch, 1, vocab]. A
    prefill then computes one row of logits instead of one per prompt token (for a 1,024-token prompt on the
    3.82 B model, a [1,024 x 3,072] x [3,072 x 32,064] int4 GEMM and 66 MB of output that the sampler never reads);
    decode steps, one position each, are unchanged. Raises ValueError when `logits` is not made by a MatMul
    (through Casts)."""
    import onnx
    from onnx import TensorProto, helper
    m = onnx.load_from_string(data) if data is not None else onnx.load(str(path), load_external_data=False)
    g = m.graph
    out = next((o for o in g.output if o.name == "logits"), None)
    prod = {o: n for n in g.node for o in n.output}
    head = prod.get("logits")
    while head is not None and head.op_type in ("Cast", "Identity"):
        head = prod.get(head.input[0])
    if out is None or head is None or head.op_type not in ("MatMul", "MatMulNBits"):
        raise ValueError("logits are not the output of a MatMul: the LM head is left as it is")
    d = out.type.tensor_type.shape.dim
    if len(d) != 3:
        raise ValueError(f"logits have rank {len(d)}, expected 3")
    names = {k: f"studio_last_logits/{k}" for k in ("starts", "ends", "axes")}
    for k, v in (("starts", -1), ("ends", 2 ** 63 - 1), ("axes", 1)):
        g.initializer.append(helper.make_tensor(names[k], TensorProto.INT64, [1], [v]))
    sliced = head.input[0] + "/studio_last_position"
    g.node.append(helper.make_node("Slice", [head.input[0], names["starts"], names["ends"], names["axes"]], [sliced],
                                   name="studio_last_position"))
    head.input[0] = sliced
    d[1].Clear()
    d[1].dim_value = 1
    # (a topological order: the Slice goes right before the head)
    nodes = list(g.node)
    nodes.insert(nodes.index(head), nodes.pop())
    del g.node[:]
    g.node.extend(nodes)
    return m.SerializeToString()


@dataclass
class Request:
    ids: list[int]
    key: str | None                   # adapter key (None = base)
    path: Path | None                 # its .onnx_adapter (read again after an eviction)
    params: SamplingParams
    seed: int
    limit: int                        # new tokens at most
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # (tok | None, time, reason)
    cancelled: bool = False
    ignore_eos: bool = False          # exactly `limit` tokens (self-test, benchmarks)

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Row:
    req: Request
    slot: int
    pos: int                          # tokens in the KV cache
    last: int                         # the token to feed next
    made: int
    sampler: Sampler


class OrtBackend:
    name = "ort"

    def __init__(self, model_dir: Path, device: str = "cuda", graph: bool = True, max_rows: int = 8,
                 max_length: int | None = None, rank: int = 64, adapter_budget: int = 32,
                 batch_invariant: bool = False, base_rank0: bool = False, fpa_intb: str = "off",
                 buckets: list[int] | None = None, lora_a_t: bool | None = False, lora_fused: str = "off"):
        import onnxruntime as ort
        import onnxruntime_genai as og
        import torch

        self.ort, self.torch = ort, torch
        self.model_dir = Path(model_dir)
        base = lib.read_base(self.model_dir)
        if not base.rows:
            raise ValueError(f"base {base.name!r} has no per-row LoRA dim (built before layout 3): "
                             "the ort backend needs the rows layout")
        cfg = json.loads((self.model_dir / "genai_config.json").read_text())
        dec = cfg["model"]["decoder"]
        self.device = device
        self.graph = bool(graph) and device == "cuda"
        self.provider = device
        if fpa_intb not in FPA_MODES:
            raise ValueError(f"fpa_intb must be one of {FPA_MODES}, not {fpa_intb!r}")
        # fpa_intb (module doc): "off"; "all": every run on onnxruntime's fpA_intB int4 kernels (TensorRT-LLM's
        # weight-only GEMV, tactics profiled per batch size while the session loads); "batched": a second
        # session with them for decode steps of 2+ rows. The kernels exist on CUDA only; on the CPU
        # "batched" still loads two (plain) sessions, which is how the tests check the routing.
        self.fpa_intb = fpa_intb if device == "cuda" else "off"  # what the stats line says
        if device == "cuda":
            providers = [("CUDAExecutionProvider", {"device_id": 0, "enable_cuda_graph": "1" if self.graph else "0"})]
        else:
            providers = ["CPUExecutionProvider"]
        path = str(self.model_dir / dec["filename"])
        # lora_a_t: A slots rank-first (True), K-first (False), or None: rank-first when the fused op serves
        # (its decode kernel then reads a rank-16 adapter in rank-64 slots as one contiguous block), K-first
        # for the MatMul chain (where cuBLAS was measured no faster on the transposed operand).
        chain_a_t = bool(lora_a_t)
        # lora_fused (engine/fused_lora): "on" (fail if the op cannot be built or loaded), "try" (fall back to
        # the MatMul chain and say why), "off". The stats say which serves: lora_kernels "fused" or "chain".
        if lora_fused not in FUSED_MODES:
            raise ValueError(f"lora_fused must be one of {FUSED_MODES}, not {lora_fused!r}")
        self._fused_lib, self.fused_note, self.fused_targets, self.fused_check_err = None, "", 0, None
        self.lora_a_t, self._graph_bytes = chain_a_t, None
        if lora_fused != "off":
            try:
                if int(rank) > fused_lora.MAX_RANK:
                    raise fused_lora.FusedLoraUnavailable(f"slot rank {rank} over the op's {fused_lora.MAX_RANK}")
                a_rank_first = lora_a_t is not False
                graph, targets = fused_lora.fuse_graph(Path(path), a_rank_first=a_rank_first)
                op_lib = fused_lora.library(device)
                self.fused_check_err = fused_lora.self_check(op_lib, device)
                self._fused_lib, self._graph_bytes, self.fused_targets = op_lib, graph, targets
                self.lora_a_t = a_rank_first
            except (fused_lora.FusedLoraUnavailable, ValueError) as e:
                if lora_fused == "on":
                    raise
                self._fused_lib, self.fused_note = None, str(e)[:300]
                log.warning("fused LoRA op not used, serving with the MatMul chain: %s", e)
        if self._fused_lib is None and self.lora_a_t:
            self._graph_bytes = graph_with_a_transposed(Path(path))
        try:
            self.sess = self._session(ort, path, providers, fpa=self.fpa_intb == "all", base=base)
        except Exception as e:  # noqa: BLE001
            if self._fused_lib is None or lora_fused == "on":
                raise
            # the fused graph did not load (e.g. an onnxruntime whose ABI the op does not match): the chain
            self._fused_lib, self.fused_targets, self.lora_a_t = None, 0, chain_a_t
            self._graph_bytes = graph_with_a_transposed(Path(path)) if chain_a_t else None
            self.fused_note = f"fused graph not loaded: {str(e).splitlines()[0][:250]}"
            log.warning("fused LoRA graph not loaded, serving with the MatMul chain: %s", e)
            self.sess = self._session(ort, path, providers, fpa=self.fpa_intb == "all", base=base)
        self.sess_batch, self.batch_session_bytes = self.sess, 0
        self.fpa_note = ""
        if fpa_intb == "batched":
            free0 = torch.cuda.mem_get_info()[0] if device == "cuda" else 0
            try:
                self.sess_batch = self._session(ort, path, providers, fpa=device == "cuda", base=base)
            except Exception as e:  # most often out of device memory: the second copy of the weights does not fit
                # serve on the one session (own kernels for every run) rather than not at all; the stats say why
                self.fpa_intb, self.fpa_note = "off", f"batch session not loaded: {str(e).splitlines()[0][:200]}"
                log.warning("fpA_intB batch session not loaded, serving on one session: %s", e)
            if device == "cuda" and self.sess_batch is not self.sess:
                self.batch_session_bytes = max(0, free0 - torch.cuda.mem_get_info()[0])
        self._graph_bytes = None  # (only the sessions' loading needed it)
        self.tokenizer = og.Tokenizer(og.Config(str(self.model_dir)))
        self.eos = {int(x) for x in self.tokenizer.eos_token_ids}
        names, onames = dec["inputs"], dec["outputs"]
        L = dec["num_hidden_layers"]
        self.kvh, self.hs = dec["num_key_value_heads"], dec["head_size"]
        self.ids_name = names.get("input_ids", "input_ids")
        self.mask_name = names.get("attention_mask", "attention_mask")
        self.pos_name = names.get("position_ids", "position_ids")
        self.logits_name = onames.get("logits", "logits")
        self.past = [names["past_key_names"] % i for i in range(L)] + [names["past_value_names"] % i for i in range(L)]
        self.present = [onames["present_key_names"] % i for i in range(L)] + \
                       [onames["present_value_names"] % i for i in range(L)]
        listed = {i.name: i.type for i in self.sess.get_inputs()}
        self.has_pos = self.pos_name in listed
        known = {self.ids_name, self.mask_name, *self.past} | ({self.pos_name} if self.has_pos else set()) | \
            ({RANK_INPUT} if self._fused_lib is not None else set())
        extra = [n for n in listed if n not in known and not is_lora(n)]
        if extra:
            raise ValueError(f"model inputs the ort backend cannot feed: {extra[:4]}")
        self.kv_np = _NP[listed[self.past[0]]]
        self.ids_np, self.mask_np = _NP[listed[self.ids_name]], _NP[listed[self.mask_name]]
        out_types = {o.name: o.type for o in self.sess.get_outputs()}
        self.logits_np = _NP[out_types[self.logits_name]]
        self.vocab = int(cfg["model"]["vocab_size"])
        ctx = int(cfg["model"].get("context_length") or cfg.get("search", {}).get("max_length") or 2048)
        self.context_length = min(ctx, int(max_length or 4096))
        self.B, self.T = int(max_rows), self.context_length
        self.rank = int(rank)
        # decode batch sizes (default_buckets); batch_invariant: always max_rows, so an answer does not depend
        # on how many others run with it (int4 kernels round a batch of 1 and of n slightly differently,
        # which flips near-ties)
        self.buckets = [self.B] if batch_invariant else \
            (default_buckets(self.B, device) if buckets is None else check_buckets(buckets, self.B))
        self.lora_dims = {k: v for k, v in (base.meta.get("lora_inputs") or {}).items()}
        self.budget = max(1, int(adapter_budget))

        tt = lambda n: getattr(torch, {np.float32: "float32", np.float16: "float16", np.int64: "int64",  # noqa: E731
                                       np.int32: "int32"}[n])
        self.tdev = torch.device("cuda:0" if device == "cuda" else "cpu")
        z = lambda shape, dt: torch.zeros(shape, dtype=tt(dt), device=self.tdev)  # noqa: E731
        B, T = self.B, self.T
        self.kv = [z((B, self.kvh, T, self.hs), self.kv_np) for _ in self.past]
        self.ids = z((B, 1), self.ids_np)
        self.mask = z((B, T), self.mask_np)
        self.pos = z((B, 1), np.int64)
        self.logits = z((B, 1, self.vocab), self.logits_np)
        self.slots: dict[str, object] = {}
        for k, dims in self.lora_dims.items():  # A [rows, K, r] (or [rows, r, K] with lora_a_t), B [rows, r, N]
            dim = int(dims[1] if ".lora_A." in k else dims[2])
            self.slots[k] = z((B, self.rank, dim) if self._rank_first(k) else (B, dim, self.rank), self.kv_np)
        self.slot_owner: list[str | None] = [None] * B   # adapter key held by each row's slots
        self.slot_ranks: list[dict] = [{} for _ in range(B)]
        self.resident: OrderedDict[str, dict] = OrderedDict()  # key -> {name: tensor [K, r] / [r, N]}
        self.paths: dict[str, Path] = {}
        self.pinned: dict[str, int] = {}                 # key -> rows using it
        # Host staging for each step's inputs: the ids, positions and the static mask's first n rows go
        # over in one asynchronous copy each (pinned memory on CUDA), instead of one scatter kernel per
        # row and synchronous copies from pageable numpy arrays. The host mask is the truth; _run's
        # synchronize orders the copies before the graph replay and before the host writes again.
        pin = device == "cuda"
        hz = lambda shape, dt: torch.zeros(shape, dtype=tt(dt), pin_memory=pin)  # noqa: E731
        self._h_ids, self._h_pos, self._h_mask = hz((B, 1), self.ids_np), hz((B, 1), np.int64), \
            hz((B, T), self.mask_np)
        self.host_ids, self.host_pos, self.host_mask = self._h_ids.numpy(), self._h_pos.numpy(), \
            self._h_mask.numpy()
        self.host_mask[:, 0] = 1  # a free row attends to one position (its output is ignored)
        self.mask.copy_(self._h_mask)
        self._bindings: dict[tuple, object] = {}
        # base_rank0: a step whose rows all serve the base binds rank-0 LoRA inputs (its own binding and
        # graph), as onnxruntime-genai does with no adapter active, so the base skips the LoRA MatMuls.
        # The engine turns it on (STUDIO_BASE_RANK0=0: off): base 299 -> 393 tok/s on the H200 (bench/NOTES.md).
        self.base_rank0 = bool(base_rank0)
        self._rank0 = z((1,), self.kv_np)  # a valid address for the empty inputs
        self.rank_used = z((1,), np.int32)  # the fused op's rank bound: the highest rank any slot row holds
        self._run_opts: dict[int, object] = {}
        self.counters = {"steps": 0, "rows_stepped": 0, "prefills": 0, "slot_writes": 0, "slot_write_s": 0.0,
                         "adapter_reads": 0, "adapter_read_s": 0.0, "evictions": 0, "max_batch": 0,
                         "ended": {}, "bucket_steps": {}, "rank0_steps": 0, "batch_session_steps": 0, "step_prep_s": 0.0, "step_run_s": 0.0, "step_pick_s": 0.0,
                         "step_emit_s": 0.0}
        self.rows: list[_Row | None] = [None] * B
        self.waiting: list[Request] = []
        self.cv = threading.Condition()
        self.closed = False
        self._idle = False                               # the loop waits for requests
        self.error: str | None = None
        self.thread = threading.Thread(target=self._loop, name="ort-decode", daemon=True)
        self.thread.start()

    def _session(self, ort, path: str, providers, fpa: bool, base):
        so = ort.SessionOptions()
        so.log_severity_level = 3  # the "initializer appears in graph inputs" warnings of the LoRA slots
        if self._fused_lib is not None:
            so.register_custom_ops_library(str(self._fused_lib))
        if fpa:
            so.add_session_config_entry("ep.cuda.fpa_intb_gemm", "1")
        data = self._graph_bytes
        try:  # logits of the last position only (last_position_logits), else as the file has them
            data, self.last_logits = last_position_logits(data, Path(path)), True
        except ValueError as e:
            self.last_logits = False
            log.warning("prefill computes the logits of every position: %s", e)
        try:
            with _ort_env({"ORT_FPA_INTB_GEMM": "1"} if fpa else {}):
                if data is not None:  # a rewritten graph; its weights from the model folder
                    so.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                                str(Path(path).parent))
                    sess = ort.InferenceSession(data, so, providers=providers)
                else:
                    sess = ort.InferenceSession(path, so, providers=providers)
        except Exception as e:  # noqa: BLE001
            # CUDA graph needs every node on the CUDA provider; a base built for the CPU (the embedded
            # default: int4, accuracy level 4) leaves some on the CPU and onnxruntime refuses the session.
            # The engine then serves with onnxruntime-genai (what the CUDA test run of 2026-12-03 checked).
            if self.graph and "graph capture" in str(e):
                raise RuntimeError("CUDA graph needs every node on CUDA, and this base leaves some on the CPU "
                                   f"(built for {base.meta.get('execution_provider', '?')})") from e
            raise
        if self.device == "cuda" and "CUDAExecutionProvider" not in sess.get_providers():
            raise RuntimeError(f"CUDA execution provider not usable: {sess.get_providers()}")
        return sess

    @property
    def lora_kernels(self) -> str:
        return "fused" if self._fused_lib is not None else "chain"

    def _rank_first(self, name: str) -> bool:
        """Whether LoRA input `name` is laid out [rows, r, dim] (B; A with lora_a_t) rather than [rows, dim, r]."""
        return ".lora_A." not in name or self.lora_a_t

    def _sess_for(self, n: int):
        """The session of a decode step of n rows (bucket): the fpA_intB one for 2+ rows when "batched"."""
        return self.sess_batch if n >= 2 else self.sess

    # ------------------------------------------------------------ adapters (the registry calls these)
    def load_adapter(self, path: Path, key: str) -> None:
        """Checks that the adapter fits the slots (rank) and registers it; its weights are read onto
        the device when a request first needs it (then kept, LRU within the budget)."""
        from artifacts import read_adapter_tensors
        shapes = read_adapter_tensors(Path(path))
        for k, s in shapes.items():
            r = s[2] if ".lora_A." in k else s[1]
            if k not in self.slots:
                raise ValueError(f"'{k}' is not a LoRA input of this base")
            if s[0] != 1 or r > self.rank:
                raise ValueError(f"'{k}' has shape {list(s)}: rows must be 1 and the rank at most the "
                                 f"serving slot rank {self.rank} (STUDIO_LORA_RANK)")
        with self.cv:
            self.paths[key] = Path(path)

    def unload_adapter(self, key: str) -> None:
        with self.cv:
            self.paths.pop(key, None)
            if not self.pinned.get(key):
                self.resident.pop(key, None)

    def _resident(self, key: str, path: Path) -> dict:
        """The device copy of an adapter (read from its file on first use or after an eviction)."""
        with self.cv:
            d = self.resident.get(key)
            if d is not None:
                self.resident.move_to_end(key)
                return d
        t0 = time.perf_counter()
        arrays = lib.read_adapter_arrays(path)
        d = {k: self.torch.from_numpy(v[0]).to(self.tdev) for k, v in arrays.items()}
        self.counters["adapter_reads"] += 1
        self.counters["adapter_read_s"] += time.perf_counter() - t0
        with self.cv:
            self.resident[key] = d
            while len(self.resident) > self.budget:
                old = next((k for k in self.resident if not self.pinned.get(k) and k != key), None)
                if old is None:
                    break
                self.resident.pop(old)
                self.counters["evictions"] += 1
        return d

    def _write_slot(self, slot: int, key: str | None, path: Path | None) -> None:
        if self.slot_owner[slot] == key:
            return
        t0 = time.perf_counter()
        src = self._resident(key, path) if key is not None else {}
        held = self.slot_ranks[slot]  # {input: rank of what the row holds}; beyond it the row is zero
        for k, t in self.slots.items():
            a = ".lora_A." in k
            row = t[slot] if self._rank_first(k) else t[slot].T  # rank first: [r, N] for B, [r, K] for A
            w = src.get(k)
            r = 0 if w is None else (w.shape[1] if a else w.shape[0])
            if w is not None:
                row[:r].copy_(w.T if a else w)
            old = held.get(k, 0)
            if old > r:
                row[r:old].zero_()
            held[k] = r
        self.slot_owner[slot] = key
        if self._fused_lib is not None:  # (ordered before the next run by _run's synchronize)
            self.rank_used.fill_(max((v for h in self.slot_ranks for v in h.values()), default=0))
        self.counters["slot_writes"] += 1
        self.counters["slot_write_s"] += time.perf_counter() - t0

    # ------------------------------------------------------------ requests
    def submit(self, req: Request) -> Request:
        with self.cv:
            if self.closed:
                raise RuntimeError("the engine is closed")
            if self.error:
                raise RuntimeError(f"the decode loop failed: {self.error}")
            self.waiting.append(req)
            self.cv.notify()
        return req

    def selftest(self, tokens: int = 4) -> None:
        """A short greedy request on the base through the loop, then two decode runs of every bucket with
        free rows (on CUDA: each bucket's graph captured and replayed before a user needs it); raises
        what went wrong."""
        from .sampling import SamplingParams
        req = self.submit(Request([1, 2, 3, 4], None, None, SamplingParams(max_new_tokens=tokens), 1, tokens,
                                  ignore_eos=True))
        while True:
            tok, _, reason = req.out.get(timeout=600)
            if tok is None:
                break
        if reason.startswith("error"):
            raise RuntimeError(reason)
        self.wait_idle()
        with self.cv:  # the loop is idle and waits on this lock for new requests
            for n in self.buckets:
                for rank0 in (False, True) if self.base_rank0 else (False,):
                    for _ in range(2):
                        self._run(self._sess_for(n), self._binding(n, rank0), self._graph_id(n, rank0))

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Blocks until the loop waits for requests, none queued or decoding (True), or the timeout
        passed (False)."""
        with self.cv:
            return self.cv.wait_for(lambda: (self._idle and not self.waiting) or self.closed, timeout)

    def stats(self) -> dict:
        c = dict(self.counters)
        c["ended"] = dict(c["ended"])
        c["bucket_steps"] = dict(c["bucket_steps"])
        c.update(resident_adapters=len(self.resident), max_rows=self.B, lora_a_t=self.lora_a_t,
                 last_logits=self.last_logits, buckets=self.buckets, max_length=self.T, rank=self.rank,
                 lora_kernels=self.lora_kernels, fused_note=self.fused_note, fused_check_err=self.fused_check_err,
                 fused_targets=self.fused_targets,
                 cuda_graph=self.graph, fpa_intb=self.fpa_intb, fpa_note=self.fpa_note,
                 sessions=1 + (self.sess_batch is not self.sess), batch_session_bytes=self.batch_session_bytes,
                 resident_bytes=int(sum(t.numel() * t.element_size()
                                                            for d in list(self.resident.values())
                                                            for t in d.values())))
        return c

    # ------------------------------------------------------------ the loop
    def _loop(self) -> None:
        admit: list = []
        try:
            while True:
                with self.cv:
                    while not self.closed and not self.waiting and not any(self.rows):
                        self._idle = True
                        self.cv.notify_all()
                        self.cv.wait()
                    self._idle = False
                    if self.closed:
                        break
                    admit = []
                    while self.waiting and None in self.rows:
                        req = self.waiting.pop(0)
                        slot = self.rows.index(None)
                        self.rows[slot] = False  # reserved
                        admit.append((slot, req))
                        if req.key is not None:
                            self.pinned[req.key] = self.pinned.get(req.key, 0) + 1
                for slot, req in admit:
                    self._prefill(slot, req)
                if any(self.rows):
                    self._step()
        except Exception as e:  # noqa: BLE001 - every waiting request hears why
            self.error = f"{type(e).__name__}: {str(e)[:300]}"
            with self.cv:
                reqs = [x.req for x in self.rows if x] + [r for _, r in admit] + self.waiting
                for req in reqs:  # (one that already ended reads its own end first)
                    req.out.put((None, time.perf_counter(), "error: " + self.error))
                self.rows = [None] * self.B
                self.waiting.clear()
        finally:
            self.closed = True

    def _end(self, slot: int, row: _Row | None, req: Request, reason: str) -> None:
        req.out.put((None, time.perf_counter(), reason))
        with self.cv:
            self.rows[slot] = None
            ended = self.counters["ended"]
            ended[reason.split(":")[0]] = ended.get(reason.split(":")[0], 0) + 1
            self.cv.notify_all()
            if req.key is not None:
                self.pinned[req.key] -= 1
                if not self.pinned[req.key]:
                    self.pinned.pop(req.key)
                    if req.key not in self.paths:  # retired while in use
                        self.resident.pop(req.key, None)
        self._set_mask(slot, 1)

    def _set_mask(self, slot: int, P: int, device: bool = False) -> None:
        """Row `slot` of the static mask: ones on its first P positions. The host row is the truth (each
        step copies rows [:n] over); `device` also writes the device row now (a prefill binds it)."""
        self.host_mask[slot] = 0
        self.host_mask[slot, :P] = 1
        if device:
            self.mask[slot].copy_(self._h_mask[slot])

    @staticmethod
    def _graph_id(n: int, rank0: bool) -> int:
        return n + 1000 if rank0 else n  # one CUDA graph per bucket, and per bucket with rank-0 slots

    def _bind_kv(self, b, slot: int, n: int) -> None:
        item = self.kv[0].element_size()
        per_row = self.kvh * self.T * self.hs * item
        for pn, qn, t in zip(self.past, self.present, self.kv):
            ptr = t.data_ptr() + slot * per_row
            shape = [n, self.kvh, self.T, self.hs]
            b.bind_input(pn, self.device, 0, self.kv_np, shape, ptr)
            b.bind_output(qn, self.device, 0, self.kv_np, shape, ptr)

    def _bind_rows(self, b, name: str, t, slot: int, n: int, dt) -> None:
        row = t[0].numel() * t.element_size()
        b.bind_input(name, self.device, 0, dt, [n, *t.shape[1:]], t.data_ptr() + slot * row)

    def _bind_slots(self, b, slot: int, n: int) -> None:
        for k, t in self.slots.items():
            self._bind_rows(b, k, t, slot, n, self.kv_np)
        self._bind_rank(b)

    def _bind_rank(self, b) -> None:
        if self._fused_lib is not None:
            b.bind_input(RANK_INPUT, self.device, 0, np.int32, [1], self.rank_used.data_ptr())

    def _run(self, sess, b, graph_id: int) -> None:
        """One run of `sess` on binding `b` (made by that session) under CUDA graph `graph_id` (-1: none;
        graph ids are per session)."""
        opts = self._run_opts.get(graph_id)
        if opts is None:
            opts = self.ort.RunOptions()
            if self.graph:
                opts.add_run_config_entry("gpu_graph_id", str(graph_id))
            self._run_opts[graph_id] = opts
        if self.device != "cuda":
            sess.run_with_iobinding(b, opts)
            return
        # one run on the device at a time in this process: a CUDA graph capture in one engine's loop must
        # not meet another engine's synchronize (two bases served at once)
        with _DEVICE_LOCK:
            self.torch.cuda.synchronize()  # torch's writes (ids, mask, slots) are done
            sess.run_with_iobinding(b, opts)
            self.torch.cuda.synchronize()  # the outputs (written on onnxruntime's stream) are ready

    def _prefill(self, slot: int, req: Request) -> None:
        torch = self.torch
        if req.cancelled:
            self._end(slot, None, req, "cancelled")
            return
        try:
            self._write_slot(slot, req.key, req.path)
        except Exception as e:  # noqa: BLE001 - e.g. the adapter file vanished: this request fails
            self._end(slot, None, req, f"error: adapter unreadable: {str(e)[:200]}")
            return
        P = len(req.ids)
        self._set_mask(slot, P, device=True)
        b = self.sess.io_binding()
        ids = torch.tensor([req.ids], dtype=self.ids.dtype, device=self.tdev)
        b.bind_input(self.ids_name, self.device, 0, self.ids_np, [1, P], ids.data_ptr())
        self._bind_rows(b, self.mask_name, self.mask, slot, 1, self.mask_np)
        if self.has_pos:
            pos = torch.arange(P, dtype=torch.int64, device=self.tdev)[None]
            b.bind_input(self.pos_name, self.device, 0, np.int64, [1, P], pos.data_ptr())
        self._bind_kv(b, slot, 1)
        self._bind_slots(b, slot, 1)
        L = 1 if self.last_logits else P  # positions the graph computes logits for
        logits = torch.empty((1, L, self.vocab), dtype=self.logits.dtype, device=self.tdev)
        b.bind_output(self.logits_name, self.device, 0, self.logits_np, [1, L, self.vocab], logits.data_ptr())
        self._run(self.sess, b, -1)
        self.counters["prefills"] += 1
        last = logits[0, -1].float().cpu().numpy()
        del ids, logits
        sampler = Sampler(req.params, req.seed, req.ids)
        row = _Row(req, slot, P, 0, 0, sampler)
        self._emit(row, sampler(last))

    def _emit(self, row: _Row, tok: int) -> None:
        """Hands a new token to the request, or ends the row (EOS, length, cancel)."""
        req, now = row.req, time.perf_counter()
        if req.cancelled:
            return self._end(row.slot, row, req, "cancelled")
        if tok in self.eos and not req.ignore_eos:
            return self._end(row.slot, row, req, "eos")
        row.made += 1
        req.out.put((tok, now, ""))
        if row.made >= req.limit or row.pos >= self.T:
            return self._end(row.slot, row, req, "length" if row.made >= req.params.max_new_tokens else "context")
        row.last = tok
        with self.cv:
            self.rows[row.slot] = row

    def _binding(self, n: int, rank0: bool = False):
        b = self._bindings.get((n, rank0))
        if b is None:
            b = self._sess_for(n).io_binding()
            b.bind_input(self.ids_name, self.device, 0, self.ids_np, [n, 1], self.ids.data_ptr())
            b.bind_input(self.mask_name, self.device, 0, self.mask_np, [n, self.T], self.mask.data_ptr())
            if self.has_pos:
                b.bind_input(self.pos_name, self.device, 0, np.int64, [n, 1], self.pos.data_ptr())
            self._bind_kv(b, 0, n)
            if rank0:
                for k, t in self.slots.items():
                    shape = [n, 0, t.shape[2]] if self._rank_first(k) else [n, t.shape[1], 0]
                    b.bind_input(k, self.device, 0, self.kv_np, shape, self._rank0.data_ptr())
                self._bind_rank(b)
            else:
                self._bind_slots(b, 0, n)
            b.bind_output(self.logits_name, self.device, 0, self.logits_np, [n, 1, self.vocab],
                          self.logits.data_ptr())
            self._bindings[(n, rank0)] = b
        return b

    def _step(self) -> None:
        live = [r for r in self.rows if r]
        hi = max(r.slot for r in live) + 1
        n = next(b for b in self.buckets if b >= hi)
        t0 = time.perf_counter()
        self.host_ids[:] = 0
        for r in live:
            self.host_ids[r.slot, 0] = r.last
            self.host_pos[r.slot, 0] = r.pos
            self.host_mask[r.slot, r.pos] = 1
        nb = self.device == "cuda"
        self.ids[:n].copy_(self._h_ids[:n], non_blocking=nb)
        self.mask[:n].copy_(self._h_mask[:n], non_blocking=nb)
        if self.has_pos:
            self.pos[:n].copy_(self._h_pos[:n], non_blocking=nb)
        t1 = time.perf_counter()
        rank0 = self.base_rank0 and all(r.req.key is None for r in live)
        self.counters["rank0_steps"] += rank0
        self.counters["bucket_steps"][n] = self.counters["bucket_steps"].get(n, 0) + 1
        sess = self._sess_for(n)
        self.counters["batch_session_steps"] += sess is not self.sess
        self._run(sess, self._binding(n, rank0), self._graph_id(n, rank0))
        t2 = time.perf_counter()
        if all(r.sampler.plain_greedy for r in live):  # argmax on the device: n ids come back, not n x vocab
            toks = self.logits[:n, 0].argmax(-1).cpu().numpy()
            picks = [int(toks[r.slot]) for r in live]
        else:
            logits = self.logits[:n, 0].float().cpu().numpy()
            picks = [r.sampler(logits[r.slot]) for r in live]
        t3 = time.perf_counter()
        c = self.counters
        c["steps"] += 1
        c["rows_stepped"] += len(live)
        c["max_batch"] = max(c["max_batch"], len(live))
        for r, tok in zip(live, picks):
            r.pos += 1
            self._emit(r, tok)
        c["step_prep_s"] += t1 - t0
        c["step_run_s"] += t2 - t1
        c["step_pick_s"] += t3 - t2
        c["step_emit_s"] += time.perf_counter() - t3

    def close(self) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify_all()
        self.thread.join(timeout=10)
