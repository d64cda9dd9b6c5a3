"""The fused LoRA op (engine/fused_lora): `studio.lora::LoraAdd(y, x, A, B, rank_used) = y + (x·A)·B` as an
onnxruntime custom op, built on first use, and the ort backend serving with it (STUDIO_LORA_FUSED).

On the CPU: the library built with g++, the op against a float64 reference (per-row and shared slots, a rank
bound below the slot rank, rank 0, prompts and decode shapes), the graph rewrite, the engine's greedy answers
equal to onnxruntime-genai's for the base, every adapter, compare rows and adapters of rank 8 and 4, and the
fallback when the op cannot be built. On a CUDA machine the op test builds and checks the CUDA kernel instead
(fp16, against the same reference); its speed is measured in bench/lora_gemm.py and the serving harness."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import ROOT
from engine import fused_lora
from engine.chat import ChatEngine, SamplingParams
from tests.engine_fixture import engine_scratch  # noqa: F401  (session fixture)

MODEL, ADAPTERS = ROOT / "models" / "default", ROOT / "adapters"
MSG = [{"role": "user", "content": "Plan a weekend in Lisbon"}]
GREEDY = SamplingParams(max_new_tokens=48)


def _device() -> str:
    try:
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


@pytest.fixture(scope="module")
def op_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("fused-lora-cache")


@pytest.mark.parametrize("rows, S, K, R, N, a_rows, b_rows, used", [
    (1, 1, 384, 16, 1152, 1, 1, None),      # one decode row (qkv of the default model)
    (4, 1, 384, 64, 384, 4, 4, 16),         # four rows, rank-64 slots holding rank 16: the rest is not read
    (3, 1, 96, 32, 40, 3, 1, 32),           # B shared by every row
    (2, 37, 384, 16, 1152, 2, 2, None),     # a prompt (tiles of 8 tokens, the last one partial)
    (1, 9, 64, 0, 32, 1, 1, None),          # rank 0 (a base-only step): y itself
    (2, 1, 3072, 16, 9216, 2, 2, 7),        # the 3.82 B shape, a bound that is not a multiple of 16
    (2, 1, 64, 12, 48, 2, 2, None),         # a rank that is not a multiple of 8 (CUDA: the generic kernel)
    (1, 1, 256, 72, 300, 1, 1, 70),         # more than 64 ranks (two chunks)
    (2, 5, 384, 64, 1152, 2, 2, 24),        # a prompt of one tile (CUDA: the single prompt kernel)
    (1, 70, 200, 12, 600, 1, 1, None),      # CUDA: the two-kernel prompt path, an odd rank, partial tiles
    (3, 33, 256, 64, 520, 3, 1, 64),        # the two-kernel path over 3 rows, B shared
    (1, 40, 128, 72, 100, 1, 1, 70),        # the two-kernel path with more than 64 ranks
    (1, 100, 512, 32, 700, 1, 1, 20),       # CUDA: x·A on tensor cores, a bound inside the second fragment
    (2, 600, 256, 64, 300, 2, 2, None),     # CUDA: tensor cores over 2 rows, a partial last tile of 16 tokens
    (1, 20, 64, 16, 77, 1, 1, None),        # an odd N
])
@pytest.mark.parametrize("a_rank_first", [False, True], ids=["A-K-first", "A-rank-first"])
def test_op_matches_reference_on_this_device(op_cache, rows, S, K, R, N, a_rows, b_rows, used, a_rank_first):
    import torch
    dev = _device()
    lib = fused_lora.library(dev, cache=op_cache)
    dt, code = (torch.float16, 10) if dev == "cuda" else (torch.float32, 1)
    g = torch.Generator().manual_seed(rows * 1000 + S)
    rnd = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    y, x = rnd(rows, S, N), rnd(rows, S, K)
    A, B = rnd(a_rows, K, R) / K ** 0.5, rnd(b_rows, R, N) / max(R, 1) ** 0.5
    want = y.double() + torch.matmul(torch.matmul(x.double(), A[:, :, :used].double()), B[:, :used].double())
    t = [v.to(dev, dt).contiguous() for v in (y, x, A.transpose(1, 2) if a_rank_first else A, B)]
    out = torch.full_like(t[0], float("nan"))
    rank = torch.tensor([used], dtype=torch.int32, device=dev) if used is not None else None
    fused_lora.lora_add(lib, code, *(v.data_ptr() for v in t), out.data_ptr(), (rows, S, K, R, N),
                        a_rows == rows, b_rows == rows, rank.data_ptr() if rank is not None else None,
                        a_rank_first=a_rank_first)
    if dev == "cuda":
        torch.cuda.synchronize()
    err = float((out.double().cpu() - want).abs().max() / want.abs().max())
    assert err < (2e-3 if dev == "cuda" else 1e-6), err
    if R:  # the bound matters: the full product differs
        full = y.double() + torch.matmul(torch.matmul(x.double(), A.double()), B.double())
        assert used is None or used == R or float((full - want).abs().max()) > 1e-3


def test_fuse_graph_replaces_every_chain_and_leaves_the_folder(tmp_path):
    import onnx
    before = {p.name: p.stat().st_mtime_ns for p in MODEL.iterdir()}
    data, n = fused_lora.fuse_graph(MODEL / "model.onnx")
    m = onnx.load_from_string(data)
    ops = [x for x in m.graph.node if x.op_type == fused_lora.OP]
    lora_in = [i.name for i in m.graph.input if ".lora_A." in i.name or ".lora_B." in i.name]
    assert n == len(ops) == len(lora_in) // 2 == 12  # qkv and o of 6 layers
    assert all(x.domain == fused_lora.DOMAIN and x.input[4] == fused_lora.RANK_INPUT for x in ops)
    assert not [x for x in m.graph.node if x.op_type == "MatMul" and any(i in lora_in for i in x.input)]
    assert {x.input[2] for x in ops} | {x.input[3] for x in ops} == set(lora_in)  # names unchanged
    rank_in = [i for i in m.graph.input if i.name == fused_lora.RANK_INPUT]
    assert len(rank_in) == 1 and rank_in[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert {p.name: p.stat().st_mtime_ns for p in MODEL.iterdir()} == before
    # rank-first A: the other op, the A inputs declared [rows, r, K], B and everything else as before
    data_t, n_t = fused_lora.fuse_graph(MODEL / "model.onnx", a_rank_first=True)
    mt = onnx.load_from_string(data_t)
    assert n_t == 12 and [x.op_type for x in mt.graph.node if x.domain == fused_lora.DOMAIN] == [fused_lora.OP_AT] * 12
    dims = lambda g: {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim]  # noqa: E731
                      for i in g.input if ".lora_" in i.name}
    d0, d1 = dims(m.graph), dims(mt.graph)
    for k in lora_in:
        assert d1[k] == ([d0[k][0], d0[k][2], d0[k][1]] if ".lora_A." in k else d0[k]), k
    plain = onnx.load(str(MODEL / "model.onnx"), load_external_data=False)
    for i in list(plain.graph.input):
        if ".lora_" in i.name:
            plain.graph.input.remove(i)
    path = tmp_path / "nolora.onnx"
    onnx.save(plain, str(path))
    with pytest.raises(ValueError, match="no LoRA inputs"):
        fused_lora.fuse_graph(path)


def test_op_refuses_shapes_that_do_not_chain(op_cache):
    """A node fed shapes that do not chain fails with the op's own message (not a crash). The CPU library,
    also on a CUDA machine (its onnxruntime has the CPU provider too)."""
    import onnxruntime as ort
    from onnx import TensorProto as T, helper as h
    lib = fused_lora.library("cpu", cache=op_cache)
    ins = [h.make_tensor_value_info(n, T.FLOAT, None) for n in ("y", "x", "A", "B")]
    node = h.make_node("LoraAdd", ["y", "x", "A", "B"], ["out"], domain="studio.lora")
    m = h.make_model(h.make_graph([node], "g", ins, [h.make_tensor_value_info("out", T.FLOAT, None)]),
                     opset_imports=[h.make_opsetid("", 17), h.make_opsetid("studio.lora", 1)])
    m.ir_version = 8
    so = ort.SessionOptions()
    so.register_custom_ops_library(str(lib))
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    f = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    out = s.run(None, {"y": f(1, 2, 8), "x": f(1, 2, 4), "A": f(1, 4, 3), "B": f(1, 3, 8)})[0]
    assert out.shape == (1, 2, 8)
    with pytest.raises(Exception, match="shapes do not chain"):
        s.run(None, {"y": f(1, 2, 8), "x": f(1, 2, 4), "A": f(1, 5, 3), "B": f(1, 3, 8)})
    with pytest.raises(Exception, match="must be 3-D"):
        s.run(None, {"y": f(2, 8), "x": f(2, 4), "A": f(4, 3), "B": f(3, 8)})


def test_engine_with_the_fused_op_answers_as_og(engine_scratch, monkeypatch, tmp_path):
    """Greedy answers of the ort backend on the fused graph equal onnxruntime-genai's, token for token: the
    base, every adapter, compare rows, and (scratch model) adapters of rank 8 and 4 in rank-64 slots, where
    rank_used follows the highest rank the slots hold."""
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path))
    monkeypatch.setenv("STUDIO_LORA_FUSED", "on")
    monkeypatch.setattr(fused_lora, "_BUILT", {})  # (not the library an earlier test of this process built)
    og = ChatEngine(MODEL, ADAPTERS, backend="og", provider="cpu")
    e = ChatEngine(MODEL, ADAPTERS, backend="ort", provider="cpu")
    try:
        st = e.serving_stats()
        assert st["lora_kernels"] == "fused" and st["fused_targets"] == 12 and st["fused_note"] == ""
        assert 0 <= st["fused_check_err"] < 1e-5  # the self-check ran when the op was loaded
        assert (tmp_path / "cache" / "fused_lora").is_dir()  # built into the workspace cache
        for v in og.variants():
            assert e.generate(MSG, v, GREEDY)[0] == og.generate(MSG, v, GREEDY)[0], v
        for a, b in (("travel", "pirate"), ("base", "travel")):
            assert list(e.compare(MSG, a, b, GREEDY))[-1][:2] == list(og.compare(MSG, a, b, GREEDY))[-1][:2]
        assert int(e.backend.rank_used[0]) == 32  # the shipped adapters' rank
        assert e.backend.lora_a_t and st["lora_a_t"]  # A slots rank-first: the default with the fused op
        from ui.chat_tab import format_stats
        s = e.generate(MSG, "travel", SamplingParams(max_new_tokens=4))[1]
        assert s.lora_kernels == "fused" and "backend ort (onnxruntime, own loop) · fused LoRA op" in format_stats(s)
    finally:
        og.close()
        e.close()
    og = ChatEngine(engine_scratch["model_dir"], engine_scratch["adapters_dir"], backend="og", provider="cpu")
    ort = ChatEngine(engine_scratch["model_dir"], engine_scratch["adapters_dir"], backend="ort", max_rows=4,
                     provider="cpu")
    monkeypatch.setenv("STUDIO_LORA_A_T", "0")  # the op on K-first A slots (LoraAdd)
    ort_k = ChatEngine(engine_scratch["model_dir"], engine_scratch["adapters_dir"], backend="ort", max_rows=4,
                       provider="cpu")
    try:
        p = SamplingParams(max_new_tokens=40)
        assert ort.serving_stats()["lora_kernels"] == "fused" and ort.backend.lora_a_t
        assert ort_k.serving_stats()["lora_kernels"] == "fused" and not ort_k.backend.lora_a_t
        seen = []
        for v in og.variants():
            want = og.generate(MSG, v, p)[0]
            assert ort.generate(MSG, v, p)[0] == want, v
            seen.append(int(ort.backend.rank_used[0]))
            assert ort_k.generate(MSG, v, p)[0] == want, v
        assert max(seen) == 8 and ort.backend.rank == 64
        a, b = og.variants()[-2:]
        assert list(ort_k.compare(MSG, a, b, p))[-1][:2] == list(og.compare(MSG, a, b, p))[-1][:2]
    finally:
        for x in (og, ort, ort_k):
            x.close()


def test_fused_op_in_both_sessions_of_the_batched_mode(monkeypatch, tmp_path):
    """STUDIO_FPA_INTB=batched loads a second session for steps of 2+ rows (on the CPU a plain one): it runs the
    fused graph too, so compares (two-row steps there) equal the one-session fused engine's, and a single answer
    equals og's."""
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path))
    monkeypatch.setenv("STUDIO_LORA_FUSED", "on")
    one = ChatEngine(MODEL, ADAPTERS, backend="ort", provider="cpu")
    monkeypatch.setenv("STUDIO_FPA_INTB", "batched")
    two = ChatEngine(MODEL, ADAPTERS, backend="ort", provider="cpu")
    og = ChatEngine(MODEL, ADAPTERS, backend="og", provider="cpu")
    try:
        st = two.serving_stats()
        assert st["sessions"] == 2 and st["lora_kernels"] == "fused"
        assert two.generate(MSG, "travel", GREEDY)[0] == og.generate(MSG, "travel", GREEDY)[0]
        for a, b in (("pirate", "base"), ("travel", "pirate")):
            got = list(two.compare(MSG, a, b, GREEDY))[-1]
            assert got[:2] == list(one.compare(MSG, a, b, GREEDY))[-1][:2], (a, b)
        assert two.serving_stats()["batch_session_steps"] > 0
    finally:
        for e in (one, two, og):
            e.close()


def test_build_command(tmp_path):
    """`python -m engine.fused_lora` (what ./run.sh runs when it sets up the GPU set) builds into the workspace
    cache and reports the self-check; without a compiler it exits 1 with the reason."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "STUDIO_HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "engine.fused_lora", "--device", "cpu"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "self-check relative error" in r.stdout, r.stderr
    assert str(tmp_path / "cache" / "fused_lora") in r.stdout
    env = {**env, "STUDIO_HOME": str(tmp_path / "other"), "CXX": "/nonexistent", "PATH": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "engine.fused_lora", "--device", "cpu"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "not available" in r.stderr and "compiler" in r.stderr and "Traceback" not in r.stderr


def test_fused_try_falls_back_to_the_chain_and_says_why(monkeypatch, tmp_path):
    """lora_fused="try" (what STUDIO_LORA_FUSED=auto gives on CUDA) serves with the MatMul chain when the op
    cannot be built, and the stats say why; "on" fails instead; auto on the CPU is the chain."""
    from engine.chat import _fused_choice
    from engine.ort_backend import OrtBackend
    assert (_fused_choice("auto", "cuda"), _fused_choice("auto", "cpu")) == ("try", "off")
    assert (_fused_choice("on", "cpu"), _fused_choice("off", "cuda")) == ("on", "off")
    with pytest.raises(ValueError, match="STUDIO_LORA_FUSED must be"):
        _fused_choice("sometimes", "cuda")
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path))  # an empty cache: the library must be built
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("PATH", str(tmp_path))          # no g++ / c++ on it
    monkeypatch.setattr(fused_lora, "_BUILT", {})
    assert shutil.which("g++") is None
    b = OrtBackend(MODEL, "cpu", graph=False, max_rows=2, lora_fused="try")
    try:
        st = b.stats()
        assert st["lora_kernels"] == "chain" and "compiler" in st["fused_note"] and b._graph_bytes is None
        b.selftest()
    finally:
        b.close()
    # a library that does not load (e.g. built against another onnxruntime ABI): the chain, and why
    bad = tmp_path / "bad.so"
    bad.write_bytes(b"not a shared library")
    monkeypatch.setattr(fused_lora, "library", lambda device, cache=None: bad)
    b = OrtBackend(MODEL, "cpu", graph=False, max_rows=2, lora_fused="try")
    try:  # the self-check calls it first
        st = b.stats()
        assert st["lora_kernels"] == "chain" and "self-check" in st["fused_note"] and "bad.so" in st["fused_note"]
    finally:
        b.close()
    monkeypatch.setattr(fused_lora, "self_check", lambda lib, device: 0.0)  # onnxruntime's own load then fails
    b = OrtBackend(MODEL, "cpu", graph=False, max_rows=2, lora_fused="try")
    try:
        st = b.stats()
        assert st["lora_kernels"] == "chain" and st["fused_note"].startswith("fused graph not loaded")
        b.selftest()
    finally:
        b.close()
    # a library that loads but computes something else: its self-check refuses it before any request
    monkeypatch.undo()
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "h2"))
    real_add = fused_lora.lora_add

    def wrong(lib, dtype, y, x, A, B, out, *rest, **kw):
        real_add(lib, dtype, y, x, A, B, out, *rest, **kw)
        import ctypes
        ctypes.memset(out, 0, 4)  # one wrong element
    monkeypatch.setattr(fused_lora, "lora_add", wrong)
    b = OrtBackend(MODEL, "cpu", graph=False, max_rows=2, lora_fused="try")
    try:
        st = b.stats()
        assert st["lora_kernels"] == "chain" and "self-check" in st["fused_note"], st["fused_note"]
    finally:
        b.close()
    with pytest.raises(fused_lora.FusedLoraUnavailable, match="self-check"):
        OrtBackend(MODEL, "cpu", graph=False, max_rows=2, lora_fused="on")
    monkeypatch.undo()
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(fused_lora, "_BUILT", {})
    with pytest.raises(fused_lora.FusedLoraUnavailable, match="compiler"):
        OrtBackend(MODEL, "cpu", graph=False, max_rows=2, lora_fused="on")
    with pytest.raises(fused_lora.FusedLoraUnavailable, match="slot rank 320 over"):
        OrtBackend(MODEL, "cpu", graph=False, max_rows=2, rank=320, lora_fused="on")
    with pytest.raises(ValueError, match="lora_fused must be one of"):
        OrtBackend(MODEL, "cpu", graph=False, max_rows=2, lora_fused="auto")
    monkeypatch.setenv("STUDIO_LORA_FUSED", "auto")
    e = ChatEngine(MODEL, ADAPTERS, backend="ort", provider="cpu")
    try:
        assert e.serving_stats()["lora_kernels"] == "chain" and e.serving_stats()["fused_note"] == ""
    finally:
        e.close()
