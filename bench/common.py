"""Shared helpers for the bench scripts: building the ONNX variants, device facts, timing."""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


class Log:
    """The `log` object the pipeline stages expect (log.log(msg)); prints with elapsed time."""

    def __init__(self, t0: float | None = None):
        self.t0 = t0 or time.perf_counter()

    def log(self, msg: str, level: str = "info") -> None:
        print(f"[{time.perf_counter() - self.t0:7.1f}s] {msg}", flush=True)

    __call__ = log


def median(xs):
    return statistics.median(xs) if xs else None


def time_reps(fn, reps: int) -> list[float]:
    """Seconds of each of `reps` calls of fn (warm it up first)."""
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def run_rows(eng, variants: list[str], ids: list[int], n: int) -> tuple[list, float]:
    """One greedy request of exactly n new tokens per variant, submitted at once straight to the engine's ort
    backend (no consumer threads); waits until the backend is idle. Returns the requests (their tokens wait
    in `out`) and the wall seconds from submit to idle."""
    from engine.ort_backend import Request
    from engine.sampling import SamplingParams
    held = [eng.registry.acquire(v) for v in variants]
    try:
        t0 = time.perf_counter()
        reqs = [eng.backend.submit(Request(ids, h and h.key, h and h.info.path, SamplingParams(max_new_tokens=n),
                                           1, n, ignore_eos=True)) for h in held]
        eng.backend.wait_idle()
        return reqs, time.perf_counter() - t0
    finally:
        for h in held:
            eng.registry.release(h)


def build_base(hf: Path, out: Path, ep: str, block_size: int, accuracy_level: int, log: Log) -> dict:
    """int4 model WITHOUT LoRA slots (builder defaults otherwise, asymmetric like the pipeline)."""
    if (out / "genai_config.json").is_file():
        return {"cached": True}
    t0 = time.perf_counter()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(tmp),
           "-p", "int4", "-e", ep, "-c", str(out.parent / "hf-cache"), "--extra_options",
           f"block_size={block_size}", f"accuracy_level={accuracy_level}", "is_symmetric=false",
           "shared_embeddings=false"]  # builder 0.18 bug with tied embeddings, see pipeline/stage_onnx.py
    logf = out.with_name(out.name + ".build.log")
    with open(logf, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    if r.returncode != 0 or not (tmp / "genai_config.json").is_file():
        raise RuntimeError(f"builder failed ({r.returncode}); tail of {logf}:\n" + logf.read_text()[-2000:])
    os.replace(tmp, out)
    return {"seconds": round(time.perf_counter() - t0, 1)}


def build_slots(hf: Path, lora: Path, out: Path, ep: str, block_size: int, accuracy_level: int,
                log: Log) -> dict:
    """int4 model WITH float LoRA slots, through the pipeline's own stage (builder + Olive)."""
    if (out / "genai_config.json").is_file():
        return {"cached": True}
    from pipeline.recipe import OnnxConfig
    from pipeline.stage_onnx import build_onnx
    t0 = time.perf_counter()
    cfg = OnnxConfig(precision="int4", block_size=block_size, accuracy_level=accuracy_level,
                     execution_provider=ep)
    # the builder layout (q/k/v split): the rewrites in run.py start from it and compare against it
    info = build_onnx(hf, lora, cfg, ep, out, log, lora_layout="builder")
    info["seconds"] = round(time.perf_counter() - t0, 1)
    return {k: v for k, v in info.items() if k != "lora_inputs"}


def convert(peft_dir: Path, onnx_dir: Path, out_file: Path) -> dict:
    from pipeline.stage_adapter import convert_adapter
    if out_file.is_file():
        return {"file": str(out_file), "cached": True}
    return convert_adapter(peft_dir, onnx_dir, out_file)


def pipeline_build(ws: Path, args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """`python -m pipeline build --quiet ARGS` in workspace `ws` (STUDIO_HOME); the process and its seconds."""
    env = dict(os.environ, STUDIO_HOME=str(ws),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "pipeline", "build", "--quiet", *args], cwd=REPO, env=env,
                       capture_output=True, text=True)
    return p, time.perf_counter() - t0


def dir_size(d: Path) -> int:
    return sum(f.stat().st_size for f in Path(d).iterdir() if f.is_file())


def weight_bytes(model_dir: Path) -> int:
    """Bytes of an ONNX model folder's graph and external weights (.onnx, .data)."""
    return sum(f.stat().st_size for f in Path(model_dir).iterdir()
               if f.is_file() and (f.name.endswith(".onnx") or f.name.endswith(".data")))


# ------------------------------------------------------------------ onnxruntime-genai
def og_model(model_dir: Path, device: str = "cpu", graph: bool = False, overlay: dict | None = None):
    """og.Model on the CPU or on CUDA (CUDA graph on/off); `overlay` is merged into genai_config."""
    import onnxruntime_genai as og
    cfg = og.Config(str(model_dir))
    cfg.clear_providers()
    if device == "cuda":
        cfg.append_provider("cuda")
        cfg.set_provider_option("cuda", "enable_cuda_graph", "1" if graph else "0")
    if overlay:
        cfg.overlay(json.dumps(overlay))
    return og.Model(cfg)


def og_generator(model, prompt: list[int], n: int, adapters=None, name: str | None = None, batch: int = 1):
    """A greedy og.Generator that makes exactly n new tokens (min_length = max_length), with the prompt
    appended (batch copies of it) and the adapter `name` of `adapters` active."""
    import numpy as np
    import onnxruntime_genai as og
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + n, min_length=len(prompt) + n, do_sample=False,
                              batch_size=batch)
    gen = og.Generator(model, params)
    if name:
        gen.set_active_adapter(adapters, name)
    gen.append_tokens(np.array([prompt] * batch, dtype=np.int32))
    return gen


def decode_rest(gen) -> int:
    """generate_next_token until the generator is done; returns how many tokens that made."""
    k = 0
    while not gen.is_done():
        gen.generate_next_token()
        k += 1
    return k


def og_timed_request(model, prompt: list[int], n: int, adapters=None, name: str | None = None
                     ) -> tuple[float, float, int]:
    """One greedy request of exactly n new tokens: (time to the first token in s, decode tokens/s after
    the first, tokens made)."""
    t0 = time.perf_counter()
    gen = og_generator(model, prompt, n, adapters, name)
    gen.generate_next_token()
    t1 = time.perf_counter()
    k = decode_rest(gen)
    t2 = time.perf_counter()
    del gen
    return t1 - t0, k / (t2 - t1) if k else 0.0, k + 1


def bench_prompts(model_dir: Path, long_n: int) -> tuple[list[int], list[int]]:
    """The 16-token prompt and a long_n-token prompt spread over the model's vocabulary."""
    vocab = json.loads((Path(model_dir) / "genai_config.json").read_text())["model"]["vocab_size"]
    return list(range(100, 116)), [100 + (i * 7919) % (vocab - 200) for i in range(long_n)]


# ------------------------------------------------------------------ device facts
def gpu_used_mib() -> float | None:
    """Used memory of GPU 0 (MiB) from NVML, as nvidia-smi shows it."""
    try:
        import pynvml
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(int(os.environ.get("BENCH_GPU", "0")))
        return pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**20
    except Exception:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                  "-i", os.environ.get("BENCH_GPU", "0")], capture_output=True, text=True)
            return float(out.stdout.strip().splitlines()[0])
        except Exception:
            return None


def rss_mib() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def device_info(device: str) -> dict:
    import platform
    from importlib import metadata
    info = {"device": device, "host": platform.node(), "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    pk = {}
    for name in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-genai", "onnxruntime-genai-cuda", "torch",
                 "transformers", "peft", "olive-ai", "onnx", "numpy"):
        try:
            pk[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    info["packages"] = pk
    try:
        import onnxruntime as ort
        info["onnxruntime_loaded"] = {"version": ort.__version__, "file": ort.__file__,
                                      "providers": ort.get_available_providers()}
        import onnxruntime_genai as og
        info["onnxruntime_genai_loaded"] = {"file": og.__file__, "cuda": og.is_cuda_available()}
    except Exception as e:  # noqa: BLE001
        info["import_error"] = repr(e)
    if device == "cuda":
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                            "--format=csv,noheader"], capture_output=True, text=True)
        info["gpu"] = q.stdout.strip()
        try:
            import torch
            info["gpu_name"] = torch.cuda.get_device_name(0)
            info["torch_cuda"] = torch.version.cuda
        except Exception:
            pass
    return info


def device_slug(info: dict) -> str:
    if info["device"] == "cuda":
        name = info.get("gpu_name") or info.get("gpu", "gpu").split(",")[0]
        return "".join(c if c.isalnum() else "-" for c in name.replace("NVIDIA ", "")).strip("-").lower()
    return "cpu"


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)
