"""Helpers for tests that launch the real app (`python app.py`) in a subprocess: a temporary workspace
(STUDIO_HOME) holding copies of the ONNX base and adapters and links to models/default-hf and data/,
start/stop on a random free port, the module-scoped `app` fixture (import it into a test module), and
the /chat call.

Environment overrides (to run against other artifacts): APP_TEST_SOURCE (a folder with models/ and
adapters/, default: the repository), APP_TEST_BASE (default: "default"), APP_TEST_ADAPTERS
(comma-separated, default: "travel,pirate")."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path(os.environ.get("APP_TEST_SOURCE", ROOT))
BASE = os.environ.get("APP_TEST_BASE", "default")
ADAPTERS = [a for a in os.environ.get("APP_TEST_ADAPTERS", "travel,pirate").split(",") if a]
MAX_NEW = 24
PROMPT = "What should I pack for a weekend in Lisbon?"

pytestmark = pytest.mark.timeout(1800)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_workspace(root: Path) -> Path:
    """models/<BASE> and adapters/* copied (the app may write there), default-hf and data linked."""
    (root / "models").mkdir(parents=True)
    (root / "adapters").mkdir()
    src_base = SOURCE / "models" / BASE
    if not (src_base / "genai_config.json").exists():
        pytest.fail(f"no ONNX base at {src_base} (build it first: ./run.sh or python -m pipeline build)")
    shutil.copytree(src_base, root / "models" / BASE)
    for a in ADAPTERS:
        if not (SOURCE / "adapters" / a).is_dir():
            pytest.fail(f"adapter {a} missing in {SOURCE / 'adapters'}")
        shutil.copytree(SOURCE / "adapters" / a, root / "adapters" / a)
    for src in (SOURCE / "models" / "default-hf", ROOT / "models" / "default-hf"):
        if (src / "config.json").exists():
            os.symlink(src.resolve(), root / "models" / "default-hf")
            break
    os.symlink(ROOT / "data", root / "data")
    return root


def start_app(ws: Path, port: int, log_path: Path, args: tuple = (), env: dict | None = None) -> subprocess.Popen:
    """`python app.py --port PORT *args` on workspace ws (offline; `env` adds variables); waits until it
    answers. Exports and pushes take no turns (STUDIO_EXPORT_TURN_S=0: tests export back to back from one client)
    unless `env` says otherwise."""
    env = {**os.environ, "STUDIO_HOME": str(ws), "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "STUDIO_EXPORT_TURN_S": "0", **(env or {})}
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), *args], cwd=str(ws),
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.time()
    while time.time() - t0 < 180:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"app did not answer on {url} within 180 s:\n{log_path.read_text()[-3000:]}")


def stop_app(proc: subprocess.Popen, ws: Path) -> None:
    """Stops the app and any build job it left running in the temporary workspace."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    sys.path.insert(0, str(ROOT))
    from pipeline import jobs
    for d in sorted((ws / "runs").glob("*")) if (ws / "runs").exists() else []:
        if (d / "pid").exists():
            jobs.cancel(d)  # also reaps a job process that lingers after its job_end


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    ws = make_workspace(root / "ws")
    port = free_port()
    log_path = root / "app.log"
    proc = start_app(ws, port, log_path)
    from gradio_client import Client
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield {"client": client, "ws": ws, "port": port, "log": log_path, "proc": proc}
    stop_app(proc, ws)


def text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text") or ""
    return "".join(text_of(c) for c in content or [])


def chat(client, message, variant="base", base=BASE, compare=False, variant_b="base", history=None,
         temperature=0.0, max_new=MAX_NEW, seed=0):
    hist_a, hist_b, box, stats = client.predict(
        message, history or [], [], base, variant, variant_b, compare,
        temperature, 1.0, 0, max_new, 1.0, seed, api_name="/chat")
    return hist_a, hist_b, box, stats


def last_answer(hist) -> str:
    assert hist and hist[-1]["role"] == "assistant", hist
    return text_of(hist[-1]["content"])


