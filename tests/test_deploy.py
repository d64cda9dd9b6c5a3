"""Share and deploy: launch options (share needs auth), --auth really protects the launched app, the
chat-only UI imports no torch, Space export (folder, README header, requirements per hardware, atomic,
refusals) and the exported Space in a FRESH venv from PyPI answering base and adapters offline, Hub
upload against tests/fake_hub.py (repo type, exact file list, token never in outputs, 401/403/409/
connection refused as messages), and Hub download offline / progress for Build."""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from deploy.launch import LaunchError, resolve_launch_options  # noqa: E402
from fake_hub import FakeHub, Repo  # noqa: E402

BASE = "default"
PROMPT = "What should I pack for a weekend in Lisbon?"
TOKEN = "hf_FakeSecretToken1234567890"
HEAVY = ("torch", "transformers", "olive", "olive_ai", "peft", "accelerate", "datasets")


def pythonpath_without_project() -> str:
    """PYTHONPATH with the project folder left out: an exported Space must run from its own files, yet
    find the installed packages (on the GPU machine those live on PYTHONPATH)."""
    root = Path(__file__).resolve().parent.parent
    keep = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if p and Path(p).resolve() != root]
    return os.pathsep.join(keep)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fitting_adapters() -> list[str]:
    import artifacts as library
    info = library.read_base(ROOT / "models" / BASE)
    return [a.name for a in library.list_adapters(ROOT / "adapters", info) if a.ok]


@pytest.fixture(scope="module")
def artifacts():
    if not (ROOT / "models" / BASE / "genai_config.json").is_file():
        pytest.fail("no ONNX base models/default (being rebuilt?)")
    names = fitting_adapters()
    if not names:
        pytest.fail("no adapter fits models/default")
    return names


def make_ws(root: Path, adapters: list[str]) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "adapters").mkdir()
    shutil.copytree(ROOT / "models" / BASE, root / "models" / BASE)
    for a in adapters:
        shutil.copytree(ROOT / "adapters" / a, root / "adapters" / a)
    return root


def wait_http(proc, url: str, log: Path, timeout=180) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # answers (e.g. 401 before login)
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"no answer on {url} within {timeout} s:\n{log.read_text()[-3000:]}")


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def chat(client, variant: str, max_new=24) -> str:
    hist_a, _b, _box, stats = client.predict(PROMPT, [], [], BASE, variant, "base", False,
                                             0.0, 1.0, 0, max_new, 1.0, 0, api_name="/chat")
    assert hist_a and hist_a[-1]["role"] == "assistant", (hist_a, stats)
    c = hist_a[-1]["content"]
    text = c if isinstance(c, str) else "".join(x.get("text", "") if isinstance(x, dict) else str(x) for x in c)
    assert text.strip(), stats
    return text


def args(**kw) -> argparse.Namespace:
    d = {"share": False, "auth": None, "share_without_auth": False}
    d.update(kw)
    return argparse.Namespace(**d)


# ------------------------------------------------------------------------------------ launch options
def test_never_shares_by_default():
    o = resolve_launch_options(args(), {})
    assert o.share is False and o.auth is None and o.warning is None
    assert o.launch_kwargs() == {"share": False, "auth": None}


def test_share_without_credentials_is_refused():
    with pytest.raises(LaunchError) as e:
        resolve_launch_options(args(share=True), {})
    msg = str(e.value)
    assert "--auth USER:PASS" in msg and "STUDIO_AUTH" in msg and "--share-without-auth" in msg


def test_share_with_auth_from_flag_or_env():
    o = resolve_launch_options(args(share=True, auth="ann:s3cret"), {})
    assert o.share and o.auth == ("ann", "s3cret") and o.auth_source == "--auth" and o.warning is None
    o = resolve_launch_options(args(share=True), {"STUDIO_AUTH": "bob:pw:with:colons"})
    assert o.share and o.auth == ("bob", "pw:with:colons") and o.auth_source == "$STUDIO_AUTH"
    o = resolve_launch_options(args(share=True, auth="ann:x"), {"STUDIO_AUTH": "bob:y"})
    assert o.auth == ("ann", "x")  # the flag wins
    o = resolve_launch_options(args(), {"STUDIO_AUTH": "bob:y"})  # local app protected, still not shared
    assert o.share is False and o.auth == ("bob", "y")
    assert "y" not in repr(resolve_launch_options(args(auth="bob:y"), {})).replace("auth_source", "")


def test_share_without_auth_needs_the_explicit_flag_and_warns():
    o = resolve_launch_options(args(share_without_auth=True), {})
    assert o.share is True and o.auth is None
    assert "PUBLIC" in o.warning and "WITHOUT a password" in o.warning
    o = resolve_launch_options(args(share=True, share_without_auth=True, auth="a:b"), {})
    assert o.auth == ("a", "b") and o.warning is None


@pytest.mark.parametrize("bad", ["nopassword", ":pw", "user:"])
def test_malformed_credentials_are_refused_without_echo(bad):
    env = {"STUDIO_AUTH": bad}
    with pytest.raises(LaunchError) as e:
        resolve_launch_options(args(share=True), env)
    assert "USER:PASS" in str(e.value)
    with pytest.raises(LaunchError) as e:
        resolve_launch_options(args(auth=bad), {})
    if len(bad) > 3:
        assert bad not in str(e.value)


def test_app_cli_refuses_share_without_auth_and_makes_no_link():
    env = {k: v for k, v in os.environ.items() if k != "STUDIO_AUTH"}
    r = subprocess.run([sys.executable, str(ROOT / "app.py"), "--share", "--chat-only", "--port", "1"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "refusing to create a public share link without credentials" in r.stderr
    assert "gradio.live" not in r.stdout


def test_share_warning_banner_is_on_the_page(artifacts, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(make_ws(tmp_path / "ws", artifacts)))
    import app
    from deploy.launch import SHARE_WITHOUT_AUTH_WARNING
    for chat_only in (True, False):
        demo = app.build_demo(chat_only=chat_only, warning=SHARE_WITHOUT_AUTH_WARNING)
        banners = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "share-warning"]
        assert banners and SHARE_WITHOUT_AUTH_WARNING in banners[0].value
        # and a toast on page load
        assert any(getattr(d, "fn", None) and d.fn.__name__ == "toast" for d in demo.fns.values())
    demo = app.build_demo(chat_only=True)
    assert not [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "share-warning"]


def test_chat_only_ui_does_not_import_torch(artifacts):
    code = ("import sys; sys.argv=['app.py']; import app; d = app.build_demo(chat_only=True); "
            "print(sorted(d.ui_tabs)); "
            f"print([m for m in sys.modules if m.split('.')[0] in {HEAVY!r}])")
    r = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    tabs, heavy = r.stdout.strip().splitlines()[-2:]
    assert tabs == "['chat', 'library']"
    assert heavy == "[]", heavy


def test_auth_protects_the_launched_app(artifacts, tmp_path):
    from gradio_client import Client
    ws = make_ws(tmp_path / "ws", artifacts[:1])
    port, log = free_port(), tmp_path / "app.log"
    env = dict(os.environ, STUDIO_HOME=str(ws), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               PYTHONUNBUFFERED="1")
    env.pop("STUDIO_AUTH", None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--chat-only", "--port", str(port),
                             "--auth", "ann:open-sesame"], env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(proc, url, log)
        # plain HTTP: the API config is closed without a login
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "config", timeout=10)
        assert e.value.code == 401
        with pytest.raises(Exception):
            Client(url, verbose=False)
        with pytest.raises(Exception):
            Client(url, auth=("ann", "wrong"), verbose=False)
        client = Client(url, auth=("ann", "open-sesame"), verbose=False)
        assert chat(client, "base")
        assert "login required" in log.read_text()
        assert "open-sesame" not in log.read_text()
    finally:
        stop(proc)


# ------------------------------------------------------------------------------------ Space export
def test_export_space_folder(artifacts, tmp_path):
    from deploy.space import export_space
    out = tmp_path / "space"
    r = export_space(out, BASE, artifacts, "cpu-basic")
    assert r.adapters == artifacts
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    base_files = {f"models/{BASE}/{p.name}" for p in (ROOT / "models" / BASE).iterdir() if p.is_file()}
    expected = ({"README.md", "requirements.txt", "app.py", ".gitattributes", "deploy/__init__.py",
                 "deploy/launch.py", "deploy/clients.py",
                 *(f"engine/{f}" for f in ("__init__.py", "chat.py", "registry.py", "sampling.py", "templates.py",
                                           "live.py", "og_backend.py")),
                 *(f"artifacts/{f}" for f in ("__init__.py", "adapter_file.py", "library.py", "limits.py", "names.py", "owners.py",
                                              "policy.py", "publish.py", "workspace.py")), ".studio-export",
                 "ui/__init__.py", "ui/interface.py", "ui/hardening.py", "ui/chat_tab.py", "ui/slots.py", "ui/library_tab.py", "ui/engine.py"}
                | base_files | {f"adapters/{a}/{f}" for a in artifacts for f in ("adapter.onnx_adapter",
                                                                                   "metadata.json")})
    assert files == expected
    assert not list(tmp_path.glob(".space.tmp-*"))
    head = (out / "README.md").read_text().split("---")[1]
    for line in ("sdk: gradio", "sdk_version: 6.31.0", "app_file: app.py", 'python_version: "3.11"',
                 "suggested_hardware: cpu-basic", "pinned: false", "emoji: ", "title: "):
        assert line in head, line
    reqs = (out / "requirements.txt").read_text()
    pkgs = [x for x in reqs.splitlines() if x and not x.startswith("#")]
    assert pkgs == ["onnxruntime-genai==0.18.0", "onnxruntime==1.31.1", "gradio==6.31.0", "numpy"]
    # no pipeline, Olive, transformers or torch anywhere in the shipped code
    for f in out.rglob("*.py"):
        text = f.read_text()
        for mod in ("pipeline", "olive", "transformers", "torch", "peft"):
            assert f"import {mod}" not in text and f"from {mod}" not in text, (f, mod)
    # ui/engine.py is the chat-only engine
    assert "class ChatOnlyEngine" in (out / "ui" / "engine.py").read_text()


def test_export_space_gpu_requirements(artifacts, tmp_path):
    from deploy.space import export_space
    export_space(tmp_path / "g", BASE, [], "a10g-small")
    reqs = (tmp_path / "g" / "requirements.txt").read_text()
    pkgs = [x for x in reqs.splitlines() if x and not x.startswith("#")]
    assert pkgs == ["onnxruntime-genai-cuda==0.18.0", "onnxruntime-gpu==1.31.1", "gradio==6.31.0", "numpy"]
    assert "suggested_hardware: a10g-small" in (tmp_path / "g" / "README.md").read_text()
    assert not (tmp_path / "g" / "adapters").exists()


def test_export_refusals(artifacts, tmp_path):
    from deploy.space import ExportError, export_space
    cases = [
        (dict(base="../models"), "unsafe base name"),
        (dict(base="nope"), "no ONNX base 'nope'"),
        (dict(adapters=["../../etc"]), "unsafe adapter name"),
        (dict(adapters=["missing-one"]), "no adapter 'missing-one'"),
        (dict(hardware="quantum-xl"), "unknown Space hardware"),
    ]
    for kw, msg in cases:
        with pytest.raises(ExportError, match=msg):
            export_space(tmp_path / "x", **{"base": BASE, **kw})
        assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.tmp-*"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export_space(tmp_path / "full", BASE, [])
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    # --force replaces only a previous export (it holds the marker), never another folder
    with pytest.raises(ExportError, match="not a previous Space export"):
        export_space(tmp_path / "full", BASE, [], force=True)
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    first = export_space(tmp_path / "exp", BASE, []).out
    (first / "stale.txt").write_text("from the first export")
    export_space(tmp_path / "exp", BASE, [], force=True)
    assert not (first / "stale.txt").exists() and (first / "app.py").exists()
    assert (tmp_path / "exp.previous" / "stale.txt").exists()  # the replaced export is kept, one generation
    # the CLI says it as a message
    r = subprocess.run([sys.executable, "-m", "deploy", "space", "--out", str(tmp_path / "y"), "--base", "a/b"],
                       cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "export failed: unsafe base name" in r.stderr and "Traceback" not in r.stderr


def test_exported_space_imports_only_engine_and_gradio(artifacts, tmp_path):
    from deploy.space import export_space
    out = export_space(tmp_path / "space", BASE, artifacts).out
    code = ("import sys; sys.argv=['app.py']; import app; d = app.build_demo(); "
            "print(d.app_engine.variants('default')[0]); "
            f"print([m for m in sys.modules if m.split('.')[0] in {HEAVY + ('pipeline', 'deploy.space')!r} "
            "or m in ('deploy.space', 'deploy.push')])")
    env = dict(os.environ, PYTHONPATH=pythonpath_without_project())
    r = subprocess.run([sys.executable, "-c", code], cwd=str(out), capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    variants, heavy = r.stdout.strip().splitlines()[-2:]
    assert variants == str(["base"] + artifacts)
    assert heavy == "[]"


@pytest.mark.pypi
@pytest.mark.timeout(1200)
def test_exported_space_runs_in_a_fresh_venv_offline(artifacts, tmp_path):
    """python -m venv + pip install -r requirements.txt (PyPI), then `python app.py --port N` offline:
    chat with the base and each adapter through gradio_client (greedy; the answers differ)."""
    from gradio_client import Client

    from deploy.space import export_space
    out = export_space(tmp_path / "space", BASE, artifacts, "cpu-basic").out
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
                        str(out / "requirements.txt")], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    frozen = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True).stdout.lower()
    for pkg in ("torch==", "transformers==", "olive-ai==", "peft=="):
        assert pkg not in frozen, pkg
    port, log = free_port(), tmp_path / "space.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "STUDIO"))}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1",
               PATH=f"{venv / 'bin'}:{os.environ.get('PATH', '')}")
    proc = subprocess.Popen([str(py), "app.py", "--port", str(port)], cwd=str(out), env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(proc, f"http://127.0.0.1:{port}/", log, timeout=300)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        answers = {v: chat(client, v) for v in ["base"] + artifacts}
        assert answers["base"] == chat(client, "base")  # greedy: reproducible
        assert len(set(answers.values())) == len(answers), answers
    finally:
        stop(proc)


# ------------------------------------------------------------------------------------ Hub upload
@pytest.fixture
def hub():
    from fake_hub import FakeHub
    with FakeHub({TOKEN: "alice"}) as h:
        yield h


def push_cli(hub, *argv, token=TOKEN, tmp_path=None):
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONUNBUFFERED="1")
    if tmp_path is not None:
        env["HF_HOME"] = str(tmp_path / "hf-home")  # no saved token, nothing written elsewhere
    env.pop("HF_TOKEN", None)
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "deploy", "push", *argv], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=300)


def tree_has(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_push_space_sends_the_exported_folder(artifacts, hub, tmp_path):
    from deploy.space import export_space
    out = export_space(tmp_path / "space", BASE, artifacts).out
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != ".studio-export")
    r = push_cli(hub, "--space", "alice/studio-chat", "--folder", str(out), tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == f"{hub.url}/spaces/alice/studio-chat"
    repo = hub.repo("space", "alice/studio-chat")
    assert repo is not None and repo.repo_type == "space" and repo.sdk == "gradio" and repo.private
    assert sorted(repo.files) == files  # the export marker is not uploaded
    assert repo.files["app.py"] == (out / "app.py").read_bytes()
    assert hub.repo("model", "alice/studio-chat") is None
    # the token reached the Hub, and nowhere else
    assert f"Bearer {TOKEN}" in hub.auth_seen
    assert TOKEN not in r.stdout + r.stderr
    assert not tree_has(tmp_path, TOKEN)
    assert not any(TOKEN.encode() in b for b in repo.files.values())


def test_push_model_repo_files_and_card(artifacts, hub, tmp_path):
    import json
    r = push_cli(hub, "--model", "alice/studio-int4", "--adapters", ",".join(artifacts), tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    repo = hub.repo("model", "alice/studio-int4")
    assert repo is not None and repo.repo_type == "model"
    expected = {p.name for p in (ROOT / "models" / BASE).iterdir() if p.is_file()} | {"README.md"}
    for a in artifacts:
        expected |= {f"adapters/{a}/adapter.onnx_adapter", f"adapters/{a}/metadata.json"}
        expected |= {f"adapters/{a}/peft/{p.relative_to(ROOT / 'adapters' / a / 'peft')}"
                     for p in (ROOT / "adapters" / a / "peft").rglob("*") if p.is_file()}
    assert set(repo.files) == expected
    assert repo.files["model.onnx"] == (ROOT / "models" / BASE / "model.onnx").read_bytes()
    card = repo.files["README.md"].decode()
    assert card.startswith("---\nlibrary_name: onnxruntime-genai")
    for a in artifacts:
        meta = json.loads((ROOT / "adapters" / a / "metadata.json").read_text())
        assert f"`{a}`" in card and f"{meta['train_loss']:.4f}" in card
        if meta.get("eval_loss") is not None:
            assert f"{meta['eval_loss']:.4f}" in card
        assert f'"max_steps": {meta["recipe"]["lora"]["max_steps"]}' in card  # the recipe
    assert TOKEN not in r.stdout + r.stderr and TOKEN not in card


def test_push_errors_are_clear_messages(artifacts, hub, tmp_path):
    from deploy.push import PushError, push_space
    from deploy.space import export_space
    out = export_space(tmp_path / "space", BASE, []).out
    os.environ["HF_ENDPOINT"] = hub.url
    try:
        bad = "hf_WrongTokenWrongToken999"
        r = push_cli(hub, "--space", "alice/x", "--folder", str(out), token=bad, tmp_path=tmp_path)
        assert r.returncode == 1 and "401" in r.stderr and "refused the token" in r.stderr
        assert bad not in r.stdout + r.stderr and "Traceback" not in r.stderr
        r = push_cli(hub, "--space", "alice/x", "--folder", str(out), token=None, tmp_path=tmp_path)
        assert r.returncode == 1 and "no Hugging Face token" in r.stderr
        with pytest.raises(PushError, match=r"no rights .*bob/x.*403"):
            push_space(out, "bob/x", TOKEN)
        push_space(out, "alice/taken", TOKEN)
        with pytest.raises(PushError, match=r"alice/taken is already taken \(409"):
            push_space(out, "alice/taken", TOKEN)
        push_space(out, "alice/taken", TOKEN, exist_ok=True)  # into my own repository: fine
        assert len(hub.repo("space", "alice/taken").commits) == 2
        with pytest.raises(PushError, match="invalid repository id"):
            push_space(out, "not a repo", TOKEN)
        with pytest.raises(PushError, match="not an exported Space"):
            push_space(tmp_path, "alice/y", TOKEN)
        # a folder that looks like a Space but was not exported (no marker), or holds a link: never uploaded
        fake = tmp_path / "fake-space"
        shutil.copytree(out, fake)
        (fake / ".studio-export").unlink()
        seen = len(hub.requests)
        with pytest.raises(PushError, match="not an exported Space"):
            push_space(fake, "alice/y", TOKEN)
        (fake / ".studio-export").write_text("")
        os.symlink(tmp_path / "space", fake / "link")
        with pytest.raises(PushError, match="symbolic links"):
            push_space(fake, "alice/y", TOKEN)
        assert len(hub.requests) == seen
        os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        with pytest.raises(PushError, match="could not reach the Hugging Face Hub") as e:
            push_space(out, "alice/z", TOKEN)
        assert TOKEN not in str(e.value)
    finally:
        os.environ.pop("HF_ENDPOINT", None)


def test_token_is_scrubbed_from_unexpected_errors():
    from deploy.push import explain, scrub
    exc = RuntimeError(f"boom: headers={{'authorization': 'Bearer {TOKEN}'}} other hf_AnotherToken99")
    msg = explain(exc, "alice/x", "space", TOKEN)
    assert TOKEN not in msg and "hf_AnotherToken99" not in msg and "boom" in msg
    assert scrub(f"a {TOKEN} b", TOKEN) == "a *** b"


class _App:  # the attributes the Deploy tab uses from AppEngine
    def __init__(self, root: Path):
        from artifacts import Policy, Workspace
        self.ws = Workspace(root)
        self.policy = Policy(self.ws)
        self.models_dir = ROOT / "models"
        self.adapters_dir = ROOT / "adapters"


def test_ui_export_and_push_actions(artifacts, hub, tmp_path, monkeypatch):
    from ui.deploy_tab import export_action, push_action
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("STUDIO_MIN_FREE_GB", "0")  # (a page export needs the free-disk floor: tested elsewhere)
    app = _App(tmp_path)
    msg, path = export_action(app, BASE, artifacts, "t4-small", "sp")
    assert path == "sp" and "exported" in msg and "t4-small" in msg and "exports/sp" in msg
    assert "onnxruntime-genai-cuda==0.18.0" in (tmp_path / "exports" / "sp" / "requirements.txt").read_text()
    msg, path2 = export_action(app, "../x", [], "cpu-basic", "bad")
    assert msg.startswith("⚠") and "unsafe base name" in msg and path2 == ""
    msg = push_action(app, "Space", "alice/ui-space", TOKEN, False, False, path, BASE, artifacts, "cpu-basic")
    assert "pushed to" in msg and TOKEN not in msg, msg
    assert hub.repo("space", "alice/ui-space").sdk == "gradio"
    # a Space exported on the fly into a temporary folder: its lines name that folder only as such (red team, pass 12)
    msg = push_action(app, "Space", "alice/ui-space-2", TOKEN, False, False, "", BASE, artifacts, "cpu-basic")
    assert "pushed to" in msg and "<temporary folder>" in msg and tempfile.gettempdir() + "/" not in msg, msg
    msg = push_action(app, "Model repository", "alice/ui-model", TOKEN, True, False, "", BASE, artifacts, "")
    assert "pushed to" in msg and hub.repo("model", "alice/ui-model").private
    msg = push_action(app, "Space", "alice/ui-2", "hf_BadBadBadBad123", False, False, "", BASE, [], "cpu-basic")
    assert msg.startswith("⚠") and "401" in msg and "hf_BadBadBadBad123" not in msg
    msg = push_action(app, "Space", "alice/ui-3", "", False, False, path, BASE, [], "cpu-basic")
    assert "no Hugging Face token" in msg
    assert not tree_has(tmp_path, TOKEN)


# ------------------------------------------------------------------------------------ Hub download
@pytest.mark.parametrize("offline", [None, "1"])
def test_hub_download_offline_gives_a_message(tmp_path, offline):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{free_port()}", HF_HOME=str(tmp_path / "hf"))
    if offline:
        env["HF_HUB_OFFLINE"] = offline
    code = ("from pipeline.hub import resolve_model, ModelNotFound\n"
            "try:\n    resolve_model('someone/some-model')\n"
            "except ModelNotFound as e:\n    print('MSG', e)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    msg = r.stdout.split("MSG", 1)[1]
    assert "no Hugging Face Hub was reachable" in msg and "local model folder" in msg
    assert ("HF_HUB_OFFLINE" in msg) == bool(offline)
    assert "Traceback" not in r.stderr


HUGE = 10**15  # 1 PB: more than any disk here has free


@pytest.mark.parametrize("case", ["over the free disk", "over the operator's cap"])
def test_a_hub_model_too_big_to_download_is_refused_before_any_job(tmp_path, case):
    """The size of what a Hub id downloads (its safetensors, configs and tokenizer files, from the Hub's file
    list) is checked before a job exists, against the free disk of the Hugging Face cache less the floor and
    the operator's $STUDIO_MAX_MODEL_GB; and again in the job before the download. The Hub is a local stand-in
    (tests/fake_hub.py) answering huggingface_hub's real requests."""
    from conftest import make_workspace
    root = make_workspace(tmp_path / "ws")
    with FakeHub() as hub:
        size = HUGE if case == "over the free disk" else 3 * 10**9
        hub.repos[("model", "alice/big")] = Repo("alice/big", "model", public=True,
                                                 files={"config.json": b"{}"},
                                                 sizes={"model-00001-of-00002.safetensors": size // 2,
                                                        "model-00002-of-00002.safetensors": size - size // 2})
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_XET="1",
                   HF_HUB_DISABLE_TELEMETRY="1", STUDIO_HOME=str(root), PYTHONPATH=str(ROOT))
        if case == "over the operator's cap":
            env["STUDIO_MAX_MODEL_GB"] = "1"
        r = subprocess.run([sys.executable, "-m", "pipeline", "build", "--base", "", "--base_model", "alice/big",
                            "--train_file", "data/pirate/train.jsonl"], cwd=str(ROOT), env=env,
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 2, r.stdout + r.stderr[-3000:]
        if case == "over the free disk":
            assert "alice/big is 1,000,000.0 GB to download" in r.stderr, r.stderr
            assert "GB free and keeps 5 GB (STUDIO_MIN_FREE_GB) free" in r.stderr, r.stderr
        else:
            assert "alice/big is 3.0 GB to download, over the operator's limit of 1 GB (STUDIO_MAX_MODEL_GB)" \
                in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        assert not (root / "runs").exists() or not any((root / "runs").iterdir())
        # the job's own check, before snapshot_download (a resumed job, or one whose disk filled since)
        code = ("from pipeline.hub import resolve_model, ModelNotFound\n"
                "try:\n    resolve_model('alice/big')\n"
                "except ModelNotFound as e:\n    print('MSG', e)\n")
        r = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), env=env, capture_output=True, text=True,
                           timeout=120)
        assert "MSG alice/big is " in r.stdout and "GB to download" in r.stdout, r.stdout + r.stderr[-2000:]
        assert not list((tmp_path / "hf").rglob("*.safetensors")), "nothing was downloaded"
        assert not [p for m, p in hub.requests if "/resolve/" in p], "no file was requested"


def test_download_size_check_counts_cached_files_and_refuses_what_it_cannot_size(tmp_path):
    """Pass 14: shards already in the Hugging Face cache (for the commit checked) are not counted, so a stopped
    download resumes within the cap; a file the Hub gives no size for (a mirror, a bad answer) is not downloaded
    unchecked; and the preflight sizes a model even when its config.json is cached."""
    with FakeHub() as hub:
        shards = {"model-00001-of-00002.safetensors": 3 * 10**9, "model-00002-of-00002.safetensors": 3 * 10**9}
        hub.repos[("model", "alice/half")] = Repo("alice/half", "model", public=True, files={"config.json": b"{}"},
                                                  sizes=shards, sha="a" * 40)
        hub.repos[("model", "alice/nosize")] = Repo("alice/nosize", "model", public=True, files={"config.json": b"{}"},
                                                    sizes={"model.safetensors": None})
        hub.repos[("model", "alice/boolsize")] = Repo("alice/boolsize", "model", public=True,
                                                      files={"config.json": b"{}"}, sizes={"model.safetensors": True})
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_XET="1",
                   HF_HUB_DISABLE_TELEMETRY="1", STUDIO_MAX_MODEL_GB="4", STUDIO_MIN_FREE_GB="0")
        code = ("import sys\nfrom pipeline.hub import check_hub_id, ModelNotFound\n"
                "try:\n    check_hub_id(sys.argv[1])\n    print('OK')\n"
                "except ModelNotFound as e:\n    print('MSG', e)\n")

        def check(repo):
            r = subprocess.run([sys.executable, "-c", code, repo], cwd=str(ROOT), env=env, capture_output=True,
                               text=True, timeout=120)
            assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
            return r.stdout.strip()
        assert check("alice/half").startswith("MSG alice/half is 6.0 GB to download, over the operator's limit")
        snap = tmp_path / "hf" / "hub" / "models--alice--half" / "snapshots" / ("a" * 40)
        snap.mkdir(parents=True)
        (snap / "config.json").write_text("{}")  # cached config.json no longer skips the check
        assert check("alice/half").startswith("MSG alice/half is 6.0 GB")
        (snap / "model-00001-of-00002.safetensors").write_bytes(b"0")  # one shard here: 3 GB to fetch
        assert check("alice/half") == "OK"
        out = check("alice/nosize")
        assert out.startswith("MSG alice/nosize: the Hub gave no size for model.safetensors"), out
        assert check("alice/boolsize").startswith("MSG alice/boolsize: the Hub gave no size"), "true is no size"


def test_download_size_counts_what_snapshot_download_takes():
    """Only the files ALLOW_PATTERNS fetches count (safetensors, configs, tokenizer), LFS files by their LFS
    size: a repository's pickles and ONNX files are never downloaded, so they never refuse a model."""
    from huggingface_hub import HfApi

    from pipeline.hub import download_bytes
    with FakeHub() as hub:
        hub.repos[("model", "alice/mixed")] = Repo("alice/mixed", "model", public=True,
                                                   files={"config.json": b"{}", "tokenizer.json": b"{" * 10},
                                                   sizes={"model.safetensors": 1000, "pytorch_model.bin": HUGE,
                                                          "onnx/model.onnx": HUGE, "sub/extra.json": 7})
        info = HfApi(endpoint=hub.url).model_info("alice/mixed", files_metadata=True)
        assert download_bytes(info) == 2 + 10 + 1000 + 7


def test_hub_download_progress_events():
    """The tqdm class given to snapshot_download turns byte progress into `progress` events (stage
    prepare), from the written-bytes bar only, as hub 2.4 creates and grows its aggregated bars."""
    from huggingface_hub.utils.tqdm import _create_progress_bar

    from pipeline import hub as phub

    class Log:
        def __init__(self):
            self.events = []

        def progress(self, stage, done, total):
            self.events.append((stage, done, total))

        def log(self, msg):
            pass

    log = Log()
    cls = phub._tqdm_for(log)
    transfer = _create_progress_bar(cls=cls, log_level=20, desc="Downloading bytes", total=0, unit="B")
    bar = _create_progress_bar(cls=cls, log_level=20, desc="Reconstructing (incomplete total...)", total=0,
                               unit="B")
    for size in (1000, 3000):  # two files announced
        bar.total += size
        transfer.total += size
    for _ in range(8):
        bar.update(500)
        transfer.update(500)
    bar.close()
    transfer.close()
    assert log.events and all(e[0] == "prepare" for e in log.events)
    assert log.events[-1] == ("prepare", 4000, 4000)
    assert all(t == 4000 for _, _, t in log.events)


def test_share_without_auth_warning_is_printed_and_logged(caplog):
    from deploy.launch import announce
    printed = []
    o = resolve_launch_options(args(share_without_auth=True), {})
    with caplog.at_level("WARNING", logger="studio.launch"):
        announce(o, printed.append)
    assert printed and printed[0].startswith("WARNING: ") and "WITHOUT a password" in printed[0]
    assert any("WITHOUT a password" in r.getMessage() for r in caplog.records)
    printed.clear()
    announce(resolve_launch_options(args(share=True, auth="a:secret-pw"), {}), printed.append)
    assert printed and "secret-pw" not in printed[0] and "--auth" in printed[0]
