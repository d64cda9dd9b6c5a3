"""The README's demo table, the app and the exported Space agree (issue 15).

The app (`python app.py --chat-only`) and the Space exported with `python -m deploy space --adapters
travel,pirate`, both launched for real on the shipped artifacts and driven with gradio_client, answer each
of the README's example prompts (greedy, 128 new tokens) with base, travel and pirate: the same text in
both, and the text the README's table shows. The Chat tab offers those prompts as its examples.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench.demo import MAX_NEW_TOKENS, VARIANTS, readme_table  # noqa: E402
from test_deploy import free_port, pythonpath_without_project, stop, wait_http  # noqa: E402

BASE = "default"


def readme_rows():
    return readme_table((ROOT / "README.md").read_text(encoding="utf-8"))


def ask(client, prompt: str, variant: str) -> str:
    hist, _b, _box, stats = client.predict(prompt, [], [], BASE, variant, "base", False,
                                           0.0, 1.0, 0, MAX_NEW_TOKENS, 1.0, 0, api_name="/chat")
    assert hist and hist[-1]["role"] == "assistant", (hist, stats)
    c = hist[-1]["content"]
    text = c if isinstance(c, str) else "".join(x.get("text", "") if isinstance(x, dict) else str(x) for x in c)
    return text.strip()


def launch(cmd: list[str], cwd: Path, log: Path, env_extra: dict | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIO", "GRADIO_SERVER"))}
    env.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **(env_extra or {}))
    return subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def answers_of(url: str, rows) -> dict:
    from gradio_client import Client
    client = Client(url, verbose=False)
    return {(p, v): ask(client, p, v) for p, _ in rows for v in VARIANTS}


def test_readme_table_prompts_are_the_chat_examples():
    from ui.chat_tab import EXAMPLES
    rows = readme_rows()
    assert [p for p, _ in rows] == list(EXAMPLES)
    assert len(rows) >= 3
    for p, cells in rows:
        assert set(cells) == set(VARIANTS) and all(cells.values()), (p, cells)


@pytest.mark.timeout(900)
def test_exported_space_answers_the_readme_prompts_like_the_app(tmp_path):
    rows = readme_rows()
    out = tmp_path / "space"
    r = subprocess.run([sys.executable, "-m", "deploy", "space", "--adapters", "travel,pirate", "--out", str(out)],
                       cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and (out / "app.py").is_file(), r.stdout + r.stderr
    procs = []
    try:
        port_app, port_space = free_port(), free_port()
        procs.append(launch([sys.executable, "app.py", "--chat-only", "--port", str(port_app)], ROOT,
                            tmp_path / "app.log"))
        procs.append(launch([sys.executable, "app.py", "--port", str(port_space)], out, tmp_path / "space.log",
                            {"PYTHONPATH": pythonpath_without_project()}))
        wait_http(procs[0], f"http://127.0.0.1:{port_app}/", tmp_path / "app.log", timeout=300)
        wait_http(procs[1], f"http://127.0.0.1:{port_space}/", tmp_path / "space.log", timeout=300)
        app = answers_of(f"http://127.0.0.1:{port_app}/", rows)
        space = answers_of(f"http://127.0.0.1:{port_space}/", rows)
    finally:
        for p in procs:
            stop(p)
    for p, cells in rows:
        for v in VARIANTS:
            print(f"{v} | {p} | {space[(p, v)]}")
            assert space[(p, v)] == app[(p, v)], (p, v, space[(p, v)], app[(p, v)])
            assert " ".join(app[(p, v)].split()) == " ".join(cells[v].split()), (
                f"README.md's demo table is stale for {p!r} / {v}: rebuild it with `python -m bench.demo --readme`",
                app[(p, v)], cells[v])
