"""The benchmark scripts' CPU paths on the embedded default model, so the GPU harness (bench/gpu_all.sh)
does not rot between GPU runs. Behaviour, not speed: every figure present, answers cross-checked."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

PY = sys.executable


def _run(args, tmp_path, timeout=300):
    p = subprocess.run([PY, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


def test_serve_figures_on_cpu(tmp_path):
    out = tmp_path / "serve.json"
    _run(["bench/serve_gpu.py", "--ws", ".", "--base", "default", "--device", "cpu", "--tokens", "24",
          "--reps", "1", "--long", "64", "--copies", "2", "--out", str(out)], tmp_path)
    r = json.loads(out.read_text())
    assert r["base_meta"]["lora_rows"] and set(r["adapters"]) >= {"travel", "pirate"}
    rows = {(x["adapter"], x["cuda_graph"]): x for x in r["rows"]}
    assert rows[("-", False)]["decode_tok_s"] > 0 and rows[("a", False)]["tokens"] == 24
    assert r["switch"]["memory"]["copies"] == 2 and r["switch"]["set_active_adapter_ms"] >= 0
    (c,) = r["og_compare"]
    assert c["tokens"] == 24 and c["batch2_pair_s"] > 0 and c["interleaved_s"] > 0
    batch = r["compare"]["batch"]
    assert batch["batched"] and not r["compare"]["interleave"]["batched"]
    for mode in ("batch", "interleave"):
        for key, v in r["compare"][mode].items():
            if isinstance(v, dict):  # short greedy answers: equal to the single runs on the CPU
                assert v["equal_to_single"] == [True, True], (mode, key, v)


def test_iobinding_loops_match_og_on_cpu(tmp_path):
    out = tmp_path / "io.json"
    _run(["bench/iobinding.py", "--model", "models/default", "--adapter", "adapters/travel/adapter.onnx_adapter",
          "--device", "cpu", "--tokens", "16", "--reps", "1", "--out", str(out)], tmp_path)
    r = json.loads(out.read_text())
    for mode in ("host", "iobinding", "iobinding_host_adapter"):  # every loop gives og's greedy tokens
        rows = [x for x in r["rows"] if x["mode"] == mode]
        assert rows and all(x["tokens_equal_og"] is True and x["n_tokens"] > 0 for x in rows), (mode, rows)


def test_trace_aggregation_selftest(tmp_path):
    p = _run(["bench/gpu_trace.py", "--selftest"], tmp_path)
    assert "selftest ok" in p.stdout


def test_report_merges_the_recorded_harness_run(tmp_path):
    parts = ROOT / "bench" / "results" / "raw" / "harness-2026-11-22"
    p = _run(["bench/report.py", "--parts", str(parts), "--out-dir", str(tmp_path)], tmp_path)
    merged = json.loads((tmp_path / "h200-2026-11-22.json").read_text())
    serve = json.loads((parts / "serve.json").read_text())
    ad = next(x for x in serve["rows"] if x["cuda_graph"] and x["adapter"] == "a")
    assert f"**{ad['decode_tok_s']:,.1f}**" in merged["table"] and merged["table"] in p.stdout
    assert {"hf", "pipeline", "serve", "trace", "iobinding", "finetune", "compare"} <= set(merged["parts"])
    assert merged["info"]["gpu_name"] == "NVIDIA H200"


def test_serving_harness_cpu_path(tmp_path):
    """bench/serving_gpu.sh on an existing workspace (the default model, CPU): every part writes its JSON
    and log, the report holds the issue's summary keys; a second run resumes (skips what is done)."""
    import os
    import shutil
    ws = tmp_path / "ws"
    (ws / "models").mkdir(parents=True)
    shutil.copytree(ROOT / "models" / "default", ws / "models" / "default")
    shutil.copytree(ROOT / "adapters", ws / "adapters", ignore=shutil.ignore_patterns("peft"))
    os.symlink(ROOT / "data", ws / "data")
    work, out = tmp_path / "work", tmp_path / "results"
    env = dict(os.environ, WORK=str(work), DEVICE="cpu", WS=str(ws), BASE="default", TOKENS="24", REPS="1",
               LONG="96", USERS="3", MANY="6", PYTHON=PY)
    levers = ("engine-og", "engine-nograph", "engine-len1024", "engine-rank16", "engine-slots", "engine-buckets2")
    env["PARTS"] = " ".join(("engine", "app", "app-nopace", "og", *levers, "fused-check", "report"))
    p = subprocess.run(["bash", "bench/serving_gpu.sh", str(out)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for part in ("engine", "app", "app-nopace", "og", *levers):
        assert (work / "parts" / f"{part}.json").is_file(), (part, p.stdout[-3000:])
        assert (work / "logs" / f"{part}.log").is_file()
    (res,) = out.glob("serving-cpu-*.json")
    r = json.loads(res.read_text())
    s = r["summary"]
    keys = ("base_tok_s", "adapter_tok_s", "app_base_tok_s", "app_adapter_tok_s", "engine_base_tok_s",
            "engine_adapter_tok_s", "compare_over_one_graph", "users8_aggregate_over_one",
            "adapters100_switch_ms", "ttft96_adapter_ms", "og_base_tok_s", "og_adapter_tok_s")
    assert all(isinstance(s[k], (int, float)) for k in keys), {k: s.get(k) for k in keys}
    lever_keys = [f"{lv.replace('-', '_')}_{v}_tok_s" for lv in levers for v in ("base", "adapter")]
    assert all(isinstance(s[k], (int, float)) for k in lever_keys), {k: s.get(k) for k in lever_keys}
    assert isinstance(s["engine_buckets2_compare_over_one"], float)  # a lever run as the full engine part
    nopace = ("app_nopace_app_base_tok_s", "app_nopace_app_adapter_tok_s", "app_nopace_users8_aggregate_over_one")
    assert all(isinstance(s[k], (int, float)) for k in nopace) and "without the shared update budget" in r["table"]
    inside = ("app_engine_base_tok_s", "app_engine_adapter_tok_s", "app_nopace_app_engine_base_tok_s")
    assert all(isinstance(s[k], (int, float)) for k in inside) and "the engine inside the app" in r["table"]
    assert "ttft1024_adapter_ms" in s and s["device"] and s["packages"]["onnxruntime"] and s["date"]
    assert s["backend"] == "og" and r["failed_parts"] == {}  # the CPU default: onnxruntime-genai
    assert r["parts"]["engine"]["switch100"]["adapters"] == 6 and "| the app" in r["table"]
    assert "backend og" in r["parts"]["app"]["adapter"]["stats"] and s["app_raw_http_adapter_tok_s"] > 0
    # fused-check: the ort engine with the fused op (g++ library) and with the MatMul chain give the same greedy
    # token ids for the base and both adapters on 4 prompts
    fc = json.loads((work / "parts" / "fused-check.json").read_text())
    assert fc["fused_stats"]["lora_kernels"] == "fused" and fc["chain_stats"]["lora_kernels"] == "chain"
    assert s["fused_check_equal"] == fc["equal"] == "12/12" and fc["partings"] == [], fc["rows"][:2]
    # resumable: a second run skips every part that has its JSON
    p = subprocess.run(["bash", "bench/serving_gpu.sh", str(out)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.count("done before, skipped") == 5 + len(levers), p.stdout[-2000:]



def test_int4_kernel_probe_cpu_dry_run(tmp_path):
    """bench/int4_kernels.py on the CPU (float32, 3 nodes): both weight formats build and run at every batch size."""
    out = tmp_path / "ik.json"
    _run(["bench/int4_kernels.py", str(out), "cpu", "3"], tmp_path)
    r = json.loads(out.read_text())
    for fmt in ("block128-zp/own", "block32-sym/own"):
        assert sorted(r[fmt]["rows"], key=int) == ["1", "2", "4", "8"]
        assert all(row["ms"] > 0 for row in r[fmt]["rows"].values())


def test_int4_quality_on_the_default_model(tmp_path):
    """bench/int4_quality.py: the default model in fp32 and in the fpA_intB format (symmetric block 32), with
    the shipped adapters converted onto each; the adapters lower the held-out loss of their own data a lot,
    and int4 stays close to fp32 (measured on all 100 examples: adapter perplexity +0.2 % / +1.0 %)."""
    out = tmp_path / "q.json"
    _run(["bench/int4_quality.py", str(out), "--work", str(tmp_path / "w"), "--formats", "fp32,sym32",
          "--examples", "12"], tmp_path)
    r = json.loads(out.read_text())["formats"]
    assert r["sym32"]["symmetric"] is True and r["sym32"]["block_size"] == 32 and r["fp32"]["model_mb"] > 3 * r["sym32"]["model_mb"]
    for k in ("travel", "pirate"):
        for f in ("fp32", "sym32"):
            assert r[f][f"{k}_adapter_loss"] < 0.3 * r[f][f"{k}_base_loss"], (f, k, r[f])
        assert 0.97 < r["sym32"][f"{k}_adapter_ppl_over_fp32"] < 1.05, r["sym32"]


def test_lora_gemm_graphs_compute_the_lora_chain(tmp_path):
    """bench/lora_gemm.py's onnxruntime chains (timed on the GPU) compute base + x A B in every layout:
    run here on the CPU provider against numpy, with A (and B) given transposed where the layout reads them so."""
    import numpy as np
    import onnxruntime as ort
    sys.path.insert(0, str(ROOT / "bench"))
    import lora_gemm as L
    rng = np.random.default_rng(0)
    M, N = 2, L.NS[0]
    x = rng.standard_normal((M, 1, L.K)).astype(np.float16)
    bases = {n: rng.standard_normal((M, 1, n)).astype(np.float16) for n in L.NS}
    shapes = dict(L.ort_graph("rows", M, str(tmp_path / "rows.onnx")))
    w = {n: (rng.standard_normal(s) * 0.05).astype(np.float16) for n, s in shapes.items()}
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    lora = f32(bases[N]) + f32(x) @ f32(w["A0"]) @ f32(w["B0"])
    t = lambda a: np.ascontiguousarray(np.swapaxes(a, 1, 2))  # noqa: E731
    for v in ("rows", "at", "at_bt", "none"):
        L.ort_graph(v, M, str(tmp_path / f"{v}.onnx"))
        given = {n: t(a) if (n[0] == "A" and v in ("at", "at_bt")) or (n[0] == "B" and v == "at_bt") else a
                 for n, a in w.items()}
        sess = ort.InferenceSession(str(tmp_path / f"{v}.onnx"), providers=["CPUExecutionProvider"])
        out = f32(sess.run(["y0"], {"x": x, **{f"base{n}": b for n, b in bases.items()}, **given})[0])
        want = 2 * f32(bases[N]) if v == "none" else lora
        assert np.abs(out - want).max() <= 2e-2 * np.abs(want).max(), v


def test_prefill_stall_runs_and_every_setting_gives_the_same_tokens(tmp_path):
    """bench/prefill_stall.py (its figures are the CPU machine's, in bench/results): every setting and stream count
    is measured, and reading the prompt in pieces never changes the answer (no timings asserted)."""
    out = tmp_path / "stall.json"
    _run(["bench/prefill_stall.py", "--repeats", "1", "--out", str(out)], tmp_path)
    rows = json.loads(out.read_text())["rows"]
    assert {(r["chunk"], r["streams"]) for r in rows} == {(c, s) for c in ("0", "128", "auto") for s in (1, 2, 4)}
    assert all(r["same_tokens"] and r["requests"] == r["streams"] and r["prompt_tokens"] > 1000 for r in rows), rows
