"""A fused LoRA operator for the ort backend: one custom onnxruntime op per LoRA target instead of four kernels.

Why: in a pipeline-built base every LoRA target is MatMul(x, A) -> MatMul(., B) -> Add(y, .). On the GPU that
is four launches per target (cuBLAS picks a split-K GEMM plus its reduce kernel for the [1, K] x [K, 16]
product), 256 per decode step on the 3.82 B model, ~0.58 ms of a ~3.2 ms step: an adapter decoded at 0.83x the
base (bench/NOTES.md). No arrangement of onnxruntime's own ops does it in fewer (2026-12-07, the A-layout probe),
so this is a custom op: `studio.lora::LoraAdd(y, x, A, B, rank_used) -> y + (x·A)·B`, a BGMV-style kernel that
reads each batch row's own slot row (lora_kernel.cu), with a CPU version for CPU sessions and tests.

- `library(device)` compiles the op library once per source version into the workspace cache (g++ for "cpu",
  nvcc for "cuda", for the GPU present) and returns its path, or raises FusedLoraUnavailable with the reason
  (no compiler, a failed build). The engine then serves with the MatMul chain and says why in its stats.
- `fuse_graph(path, a_rank_first)` returns the model at `path` (graph only; weights stay in their external file)
  with every chain replaced by the op (LoraAddAT: A slots rank-first) and one new int32 graph input, RANK_INPUT [1]: the highest rank any slot row holds,
  so that the zero padding of the slots is skipped. The LoRA inputs keep their names and shapes, so the
  adapter files and the slot writing are unchanged.
- The onnxruntime ABI comes from ort_abi.h (declared here; the official headers are not part of the wheels).
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path

log = logging.getLogger(__name__)

DOMAIN = "studio.lora"
OP = "LoraAdd"
OP_AT = "LoraAddAT"  # the same with A rank-first, [rows, r, K]
RANK_INPUT = "studio_lora_rank_used"
MAX_RANK = 256  # the CUDA kernels keep x·A for kMaxRank ranks in shared memory
SRC = Path(__file__).resolve().parent
SOURCES = ("ort_abi.h", "lora_kernel.h", "lora_kernel.cu", "lora_op.cc")
_LOCK = threading.Lock()
_BUILT: dict[str, Path] = {}
_FNS: dict[str, object] = {}


class FusedLoraUnavailable(RuntimeError):
    """The op library cannot be had on this machine (the reason is the message)."""


def _key(device: str, arch: str) -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((SRC / name).read_bytes())
    h.update(f"{device}:{arch}".encode())
    return h.hexdigest()[:16]


def _cuda_arch() -> str:
    try:
        import torch
        major, minor = torch.cuda.get_device_capability(0)
        return f"{major}{minor}"
    except Exception as e:  # noqa: BLE001
        raise FusedLoraUnavailable(f"no CUDA device to build for: {e}") from e


def _compiler(device: str) -> str:
    if device == "cuda":
        cands = [os.environ.get("NVCC", ""), shutil.which("nvcc") or "",
                 os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")]
    else:
        cands = [os.environ.get("CXX", ""), shutil.which("g++") or "", shutil.which("c++") or ""]
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    raise FusedLoraUnavailable("no " + ("nvcc (CUDA compiler)" if device == "cuda" else "C++ compiler (g++)")
                               + " found to build the fused LoRA op")


def library(device: str, cache: Path | None = None) -> Path:
    """The op library for `device` ("cpu" or "cuda"), built on first use (about 1 s with g++, 10-30 s with
    nvcc) into `cache` (default: the workspace's cache/fused_lora). Raises FusedLoraUnavailable."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")
    arch = _cuda_arch() if device == "cuda" else "host"
    key = _key(device, arch)
    with _LOCK:
        if key in _BUILT and _BUILT[key].exists():
            return _BUILT[key]
        if cache is None:
            from artifacts.workspace import Workspace
            cache = Workspace.default().cache / "fused_lora"
        out = Path(cache) / key / f"libstudio_lora_{device}.so"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{threading.get_ident()}")
            cc = _compiler(device)
            if device == "cuda":
                cmd = [cc, "-O3", "-std=c++17", "-shared", "-Xcompiler", "-fPIC,-fvisibility=hidden",
                       "-DSTUDIO_LORA_CUDA", f"-gencode=arch=compute_{arch},code=[sm_{arch},compute_{arch}]",
                       "-I", str(SRC), str(SRC / "lora_op.cc"), str(SRC / "lora_kernel.cu"), "-o", str(tmp)]
            else:
                cmd = [cc, "-O3", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden", "-I", str(SRC),
                       str(SRC / "lora_op.cc"), "-o", str(tmp)]
            log.info("building the fused LoRA op: %s", " ".join(cmd))
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise FusedLoraUnavailable(f"building the fused LoRA op failed: {e}") from e
            if r.returncode != 0 or not tmp.exists():
                tmp.unlink(missing_ok=True)
                msg = (r.stderr or r.stdout).strip().splitlines()
                raise FusedLoraUnavailable("building the fused LoRA op failed: " + " | ".join(msg[-4:])[:600])
            os.replace(tmp, out)
        _BUILT[key] = out
        return out


def lora_add(lib: Path, dtype: int, y, x, A, B, out, shape: tuple, a_per_row: bool, b_per_row: bool,
             rank_used=None, stream: int = 0, a_rank_first: bool = False) -> None:
    """Calls the op's kernel directly (no onnxruntime): pointers as ints (torch `data_ptr()`), on the device
    the library was built for; A is [A_rows, K, R], or [A_rows, R, K] with a_rank_first. For tests and
    bench/lora_gemm.py. Raises RuntimeError on a failed launch."""
    fn = _FNS.get(str(lib))
    if fn is None:
        fn = ctypes.CDLL(str(lib)).studio_lora_add
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 5 + [ctypes.c_int] * 3 + \
            [ctypes.c_void_p, ctypes.c_void_p]
        _FNS[str(lib)] = fn
    rows, S, K, R, N = (int(v) for v in shape)
    rc = fn(dtype, y, x, A, B, out, rows, S, K, R, N, int(a_per_row), int(b_per_row), int(a_rank_first), rank_used,
            stream)
    if rc != 0:
        raise RuntimeError(f"studio_lora_add failed with code {rc}")


# (rows, S, K, R, N, rank_used): a decode step of 3 rows in rank-64 slots holding rank 16, prompts (CUDA: the
# two-kernel path with x·A on tensor cores, twice; one tile; an odd rank, x·A on CUDA cores), rank 0 (a decode
# step; a prompt, a device copy)
CHECK_SHAPES = ((3, 1, 256, 64, 640, 16), (1, 37, 256, 64, 384, 16), (2, 70, 256, 64, 384, 40),
                (2, 5, 256, 64, 384, 24), (1, 40, 200, 12, 300, None), (2, 1, 128, 0, 96, None),
                (1, 12, 64, 0, 48, None))


def self_check(lib: Path, device: str) -> float:
    """Runs the op on the device against a float64 reference for the shapes the engine uses (decode rows,
    a prompt, rank 0) and returns the worst relative error; raises FusedLoraUnavailable over the tolerance
    (fp16 on CUDA). The engine calls it once when it loads the op: a library that computes something else
    (a compiler, a GPU, a driver this kernel was never run on) is not served from."""
    import torch
    dev, dt, code = (("cuda", torch.float16, 10) if device == "cuda" else ("cpu", torch.float32, 1))
    g = torch.Generator().manual_seed(7)
    worst = 0.0
    for rows, S, K, R, N, used in CHECK_SHAPES:
        y, x = torch.randn(rows, S, N, generator=g), torch.randn(rows, S, K, generator=g)
        A = torch.randn(rows, K, R, generator=g) / K ** 0.5
        B = torch.randn(rows, R, N, generator=g) / max(R, 1) ** 0.5
        want = y.double() + torch.matmul(torch.matmul(x.double(), A[:, :, :used].double()),
                                         B[:, :used].double())
        rank = torch.tensor([used if used is not None else -1], dtype=torch.int32, device=dev)
        for at in (False, True):  # A K-first (LoraAdd) and rank-first (LoraAddAT)
            t = [v.to(dev, dt).contiguous() for v in (y, x, A.transpose(1, 2) if at else A, B)]
            out = torch.full_like(t[0], float("nan"))
            try:
                lora_add(lib, code, *(v.data_ptr() for v in t), out.data_ptr(), (rows, S, K, R, N), True, True,
                         rank.data_ptr(), a_rank_first=at)
                if dev == "cuda":
                    torch.cuda.synchronize()
            except (RuntimeError, OSError, AttributeError) as e:
                raise FusedLoraUnavailable(f"the fused LoRA op failed its self-check: {e}") from e
            err = float((out.double().cpu() - want).abs().max() / want.abs().max())
            worst = max(worst, err if err == err else float("inf"))  # (NaN: never written)
    if worst > (5e-3 if dev == "cuda" else 1e-5):
        raise FusedLoraUnavailable(f"the fused LoRA op failed its self-check: relative error {worst:.1e}")
    return worst


def transpose_a_inputs(g, names: set) -> None:
    """Declares the LoRA-A graph inputs `names` of graph `g` rank-first, [rows, K, r] -> [rows, r, K], and
    transposes their rank-0 default initializers to match. Raises ValueError for an input that is not 3-D."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    for i in g.input:
        if i.name in names:
            d = i.type.tensor_type.shape.dim
            if len(d) != 3:
                raise ValueError(f"LoRA-A input {i.name} has rank {len(d)}, expected 3 (the rows layout)")
            k, r = onnx.TensorShapeProto.Dimension(), onnx.TensorShapeProto.Dimension()
            k.CopyFrom(d[1])
            r.CopyFrom(d[2])
            d[1].CopyFrom(r)
            d[2].CopyFrom(k)
    for t in g.initializer:
        if t.name in names:
            a = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(np.swapaxes(a, 1, 2)), t.name))


def fuse_graph(path: Path, a_rank_first: bool = False) -> tuple[bytes, int]:
    """The model at `path` with every LoRA chain fused (module doc), serialized, and how many were fused. With
    a_rank_first the op is LoraAddAT and the LoRA-A inputs are declared [rows, r, K]: each rank's row of A is
    contiguous, so a rank-16 adapter in rank-64 slots is read as one block (the decode kernel reads A 16 bytes
    at a time along K). Raises ValueError when a LoRA input is used other than as the weight of such a chain."""
    import onnx
    from onnx import TensorProto, helper
    m = onnx.load(str(path), load_external_data=False)
    g = m.graph
    lora = {i.name for i in g.input if ".lora_A." in i.name or ".lora_B." in i.name}
    if not lora:
        raise ValueError("the graph has no LoRA inputs")
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    drop, fused = set(), []
    for n in g.node:
        if n.op_type != "MatMul" or len(n.input) != 2 or ".lora_A." not in n.input[1] or n.input[1] not in lora:
            continue
        a_out = n.output[0]
        nb = consumers.get(a_out, [])
        if len(nb) != 1 or nb[0].op_type != "MatMul" or list(nb[0].input)[0] != a_out \
                or ".lora_B." not in nb[0].input[1] or nb[0].input[1] not in lora:
            raise ValueError(f"LoRA-A product {n.name} does not feed exactly one LoRA-B MatMul")
        bnode = nb[0]
        add = consumers.get(bnode.output[0], [])
        if len(add) != 1 or add[0].op_type != "Add" or bnode.output[0] not in add[0].input:
            raise ValueError(f"LoRA-B product {bnode.name} does not feed exactly one Add")
        add = add[0]
        y = add.input[1] if add.input[0] == bnode.output[0] else add.input[0]
        fused.append((add, helper.make_node(OP_AT if a_rank_first else OP,
                                            [y, n.input[0], n.input[1], bnode.input[1], RANK_INPUT],
                                            list(add.output), name=add.name + "/fused", domain=DOMAIN)))
        drop.update({id(n), id(bnode)})
    stray = {i for n in g.node if id(n) not in drop for i in n.input if i in lora}
    if stray:
        raise ValueError(f"LoRA inputs used outside a chain: {sorted(stray)[:3]}")
    by_add = {id(add): new for add, new in fused}
    nodes = [by_add.get(id(n), n) for n in g.node if id(n) not in drop]
    del g.node[:]
    g.node.extend(nodes)
    if a_rank_first:
        transpose_a_inputs(g, {i for i in lora if ".lora_A." in i})
    g.input.append(helper.make_tensor_value_info(RANK_INPUT, TensorProto.INT32, [1]))
    m.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    log.info("fused %d LoRA chains", len(fused))
    return m.SerializeToString(), len(fused)
