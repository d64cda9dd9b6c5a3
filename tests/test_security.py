"""Safe to share (issue 12): the launched app (`python app.py --auth ...`) driven over raw HTTP the way an
attacker would: POST /login, POST /gradio_api/upload, then POST /gradio_api/queue/join with the fn_index
of a handler (hidden ones included) and the result read from the SSE stream of /gradio_api/queue/data.

One app per module, on a random free port, on a temporary workspace that already holds hostile entries
when it starts (a symlink loop and a FIFO metadata.json in adapters/, symlinks in uploads/, model folders
whose config.json / tokenizer_config.json point at code). The Hub is tests/fake_hub.py; the server's
HF_TOKEN is a token the fake Hub accepts, so a request that borrowed it would show up there.

Every attack asserts: nothing ran (the code's sentinel file is absent), nothing was read (the secret's
text is not in the answer), nothing was written or deleted (a snapshot of the workspace and of the folder
outside it is unchanged), nothing reached the Hub, and the app still serves a chat."""
from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from app_helpers import ADAPTERS, BASE, free_port, make_workspace, start_app, stop_app

pytestmark = pytest.mark.timeout(900)

USER, PASSWORD = "ann", "open-sesame"
SERVER_TOKEN = "hf_SERVERtokenNEVERlent0123456789"   # the app's $HF_TOKEN: the fake Hub accepts it
USER_TOKEN = "hf_USERtokenTYPEDinthePAGE012345"      # what a user types into the page
SECRET = "TOPSECRET-7f3a"                            # text of a file outside the workspace
SENTINEL_NAME = "code-ran"                           # written by any model code that runs


# ---------------------------------------------------------------------------- raw HTTP client
def session_of(raw) -> str:
    """The client a Raw session is on a shared app when no address is forwarded: its login session
    (ui.slots.session_client)."""
    from ui.slots import session_tag
    (token,) = {v for k, v in raw.http.cookies.items() if k.startswith("access-token")}  # what the login set
    return session_tag(token)


class Raw:
    """A logged-in browser session without a browser: config, upload, queue/join + SSE."""

    def __init__(self, base_url: str, user=USER, password=PASSWORD, local_address: str | None = None):
        transport = httpx.HTTPTransport(local_address=local_address) if local_address else None
        self.http = httpx.Client(base_url=base_url, timeout=300, transport=transport)
        self.cfg, self.comps = {}, {}
        if user is not None:
            r = self.login(user, password)
            assert r.status_code == 200, r.text
            self.cfg = self.http.get("/config").json()
            self.comps = {c["id"]: c for c in self.cfg["components"]}

    def login(self, user, password) -> httpx.Response:
        return self.http.post("/login", data={"username": user, "password": password})

    def fn(self, name: str) -> int:
        """fn_index of a handler by its api_name (private handlers keep their function's name)."""
        for i, d in enumerate(self.cfg["dependencies"]):
            if d.get("api_name") == name and d.get("backend_fn"):
                return i
        raise KeyError(name)

    def defaults(self, fn_index: int, **by_elem) -> list:
        """The handler's inputs as the page would send them: each component's value, with overrides by
        elem_id (dashes written as underscores)."""
        out = []
        for cid in self.cfg["dependencies"][fn_index]["inputs"]:
            props = self.comps[cid].get("props", {})
            key = (props.get("elem_id") or "").replace("-", "_")
            out.append(by_elem[key] if key in by_elem else props.get("value"))
        return out

    def call(self, fn, data: list) -> dict:
        """{"ok", "data" | "error"} of one event, read from the SSE stream."""
        return self.call_in(uuid.uuid4().hex, fn, data)

    def call_in(self, session: str, fn, data: list) -> dict:
        """call() within a given session (Gradio keeps per-session component state by session_hash)."""
        fn_index = self.fn(fn) if isinstance(fn, str) else fn
        body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None,
                           "trigger_id": None})  # NaN and Infinity pass as JSON's common extension
        r = self.http.post("/gradio_api/queue/join", content=body, headers={"content-type": "application/json"})
        if r.status_code != 200:
            return {"ok": False, "status": r.status_code, "error": r.text}
        with self.http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as s:
            for line in s.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    out = msg.get("output") or {}
                    if msg.get("success") and "data" in out:
                        return {"ok": True, "data": out["data"]}
                    return {"ok": False, "error": str(out.get("error") or out)}
        return {"ok": False, "error": "stream ended without a result"}

    def preview(self, train_file, template="", base_model="models/default-hf", trust=False, file=None) -> dict:
        """The Build tab's data check (/preview_data), or its upload handler when `file` is given, with
        the form's other fields as the page holds them."""
        fields = dict(build_train_file=train_file, build_data_format="auto", build_template=template,
                      build_base_model=base_model, build_trust_remote_code=trust)
        if file is not None:
            return self.call("on_upload", self.defaults(self.fn("on_upload"), build_upload=file, **fields))
        return self.call("preview_data", self.defaults(self.fn("preview_data"), **fields))

    def upload(self, name: str, content: bytes) -> dict:
        r = self.http.post("/gradio_api/upload", files={"files": (name, content)})
        assert r.status_code == 200, r.text
        return {"path": r.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}

    def chat(self, message="Where should I go in May?", variant="base", compare=False, variant_b="base",
             seed=0, temperature=0.0, max_new=8) -> dict:
        return self.call("chat", [message, [], [], BASE, variant, variant_b, compare, temperature, 1.0, 0,
                                  max_new, 1.0, seed])


def text(result: dict) -> str:
    return json.dumps(result, ensure_ascii=False)


def answer_of(result: dict) -> str:
    assert result["ok"], result
    hist = result["data"][0]
    assert hist and hist[-1]["role"] == "assistant", result
    c = hist[-1]["content"]
    return c if isinstance(c, str) else json.dumps(c)


# ---------------------------------------------------------------------------- the hostile workspace
EVIL_PY = "open({sentinel!r}, 'w').write('ran')\nclass EvilConfig: pass\nclass EvilTokenizer: pass\n"


def evil_model(d: Path, sentinel: Path, where: str) -> Path:
    """A copy of the default HF model whose `where` (config.json or tokenizer_config.json) maps to code
    that writes `sentinel` when imported."""
    from app_helpers import ROOT
    shutil.copytree(ROOT / "models" / "default-hf", d)
    (d / "evil.py").write_text(EVIL_PY.format(sentinel=str(sentinel)))
    f = d / where
    cfg = json.loads(f.read_text())
    if where == "config.json":
        cfg["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilConfig",
                           "AutoTokenizer": ["evil.EvilTokenizer", None]}
    else:
        cfg["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
        cfg["tokenizer_class"] = "EvilTokenizer"
    f.write_text(json.dumps(cfg))
    return d


def snapshot(*roots: Path) -> dict:
    """lstat of every entry under roots (names, types, sizes, mtimes; links not followed)."""
    out = {}
    for root in roots:
        for dirpath, dirnames, files in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in (".gradio", "__pycache__")]
            for n in dirnames + files:
                p = Path(dirpath) / n
                st = os.lstat(p)
                out[str(p)] = (st.st_mode, st.st_size if not p.is_dir() else 0, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def sec(tmp_path_factory):
    from fake_hub import FakeHub
    root = tmp_path_factory.mktemp("sec")
    ws = make_workspace(root / "ws")
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.jsonl").write_text(json.dumps({"prompt": SECRET, "response": SECRET}) + "\n")
    (outside / "keep").mkdir()
    (outside / "keep" / "precious.txt").write_text("do not delete")
    sentinel = outside / SENTINEL_NAME
    # hostile entries, present before the app starts
    os.symlink("loop", ws / "adapters" / "loop")                       # ELOOP
    fifo = ws / "adapters" / "fifo-meta"
    shutil.copytree(ws / "adapters" / ADAPTERS[0], fifo)
    (fifo / "metadata.json").unlink()
    os.mkfifo(fifo / "metadata.json")                                  # open() would block forever
    os.symlink(outside / "keep", ws / "adapters" / "linked")           # an adapter folder outside
    up = ws / "uploads"
    up.mkdir()
    os.symlink(outside / "secret.jsonl", up / "secret-link.jsonl")     # a link inside uploads/
    os.symlink(outside, up / "dir-link")
    (up / "good.jsonl").write_text('{"prompt": "Where to?", "response": "Lisbon."}\n')
    evil_model(up / "evilmodel", sentinel, "config.json")              # code an upload brought along
    evil_model(ws / "models" / "evil-config", sentinel, "config.json")  # the operator's folders, with code
    evil_model(ws / "models" / "evil-tok", sentinel, "tokenizer_config.json")
    (ws / "exports").mkdir()
    (ws / "exports" / "notmine").mkdir()                               # not an export: never replaced
    (ws / "exports" / "notmine" / "file.txt").write_text("someone's folder")
    (outside / "marked").mkdir()                                       # a marked export outside, linked in
    (outside / "marked" / ".studio-export").write_text("")
    (outside / "marked" / "file.txt").write_text("outside")
    os.symlink(outside / "marked", ws / "exports" / "linked-export")
    os.symlink(outside / "newdir", ws / "exports" / "dangling-export")  # a link to a folder not there yet
    port = free_port()
    hub = FakeHub({SERVER_TOKEN: "server", USER_TOKEN: "alice"})
    with hub:
        proc = start_app(ws, port, root / "app.log", args=("--auth", f"{USER}:{PASSWORD}"),
                         env={"HF_TOKEN": SERVER_TOKEN, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0",
                              "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(root / "hf-home"),
                              "GRADIO_TEMP_DIR": str(root / "gradio-tmp")})
        try:
            url = f"http://127.0.0.1:{port}"
            raw = Raw(url)
            from artifacts import Workspace, add_upload_owner  # as if this session (no forwarded address) uploaded it
            add_upload_owner(Workspace(ws), "good.jsonl", session_of(raw))
            yield {"url": url, "ws": ws, "outside": outside, "sentinel": sentinel, "hub": hub,
                   "raw": raw, "log": root / "app.log", "root": root}
        finally:
            stop_app(proc, ws)


@pytest.fixture
def guard(sec):
    """Around one test: nothing ran, nothing outside or in the workspace changed (uploads/ excepted:
    the upload handler stores files there), nothing reached the Hub, and the app still answers a chat."""
    ws, outside = sec["ws"], sec["outside"]
    watched = [outside] + [p for p in ws.iterdir() if p.name not in ("uploads", ".gradio")]
    before = snapshot(*watched)
    hub_before = list(sec["hub"].requests)
    yield sec
    assert not sec["sentinel"].exists(), "model code ran"
    after = snapshot(*watched)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert changed == [], f"written or deleted: {changed[:10]}"
    assert sec["hub"].requests == hub_before, "a request reached the Hub"
    assert answer_of(sec["raw"].chat()).strip(), "the app stopped serving"


def refused(result: dict, *fragments: str, echo: str = "") -> str:
    """The result is a refusal (an error, or a ⚠ message) naming fragments, without a traceback, a C++
    source path or the secret; short, apart from `echo` (the caller's own input given back)."""
    t = text(result)
    assert SECRET not in t, t[:2000]
    assert "Traceback" not in t and ".cc:" not in t and ".py\\\", line" not in t, t[:2000]
    if result["ok"]:
        assert "⚠" in t or '"ok": false' in t, t[:2000]
    for f in fragments:
        assert f in t, (f, t[:2000])
    assert len(t.replace(json.dumps(echo, ensure_ascii=False)[1:-1], "") if echo else t) < 20_000, "a short message"
    return t


# ---------------------------------------------------------------------------- 1. remote code
@pytest.mark.parametrize("model", ["uploads/evilmodel", "{gradio_upload}", "models/evil-config", "models/evil-tok"])
def test_model_code_never_runs_from_a_request(guard, model):
    raw = guard["raw"]
    if model == "{gradio_upload}":  # the folder Gradio stored an upload's config.json and code in
        f = raw.upload("config.json", (guard["ws"] / "uploads" / "evilmodel" / "config.json").read_bytes())
        raw.upload("evil.py", EVIL_PY.format(sentinel=str(guard["sentinel"])).encode())
        model = str(Path(f["path"]).parent)
    good = "uploads/good.jsonl"
    # the data preview with trust_remote_code ticked: the tokenizer never runs code
    r = raw.preview(good, base_model=model, trust=True)
    assert r["ok"] and not guard["sentinel"].exists(), r
    # a build that asks for remote code: refused before any job exists
    r = raw.call("build_recipe", [{"base_model": model, "train_file": good, "trust_remote_code": True,
                                   "adapter_name": "evil"}])
    t = refused(r)
    assert "trust_remote_code" in t or "not a Hub id" in t, t
    r = raw.call("start_build", raw.defaults(raw.fn("start_build"), build_base_model=model,
                                             build_train_file=good, build_trust_remote_code=True))
    refused(r)
    assert not (guard["ws"] / "runs").exists() or not list((guard["ws"] / "runs").iterdir())


# ---------------------------------------------------------------------------- 2. writes and deletes
@pytest.mark.parametrize("out", ["../../x", "{outside}/keep", "{ws}/adapters/" + ADAPTERS[-1], "{ws}/runs",
                                 "{ws}", "/tmp", "exports/../adapters", "notmine", "a\x00b", "x" * 300,
                                 "linked-export", "dangling-export"])
def test_export_writes_only_exports_and_replaces_only_exports(guard, out):
    raw = guard["raw"]
    out = out.format(outside=guard["outside"], ws=guard["ws"])
    for replace in (True, False):
        refused(raw.call("export_space", [BASE, [], "cpu-basic", out, replace]))
    # links planted in exports/ are neither written through nor replaced (red team, 2026-12-03)
    assert sorted(p.name for p in (guard["outside"] / "marked").iterdir()) == [".studio-export", "file.txt"]
    assert not (guard["outside"] / "newdir").exists() and not (guard["outside"] / "marked.previous").exists()
    assert (guard["outside"] / "keep" / "precious.txt").exists()
    assert (guard["ws"] / "adapters" / ADAPTERS[-1] / "metadata.json").exists()
    assert (guard["ws"] / "exports" / "notmine" / "file.txt").exists()


def test_export_to_exports_then_replace_it(sec):
    raw, ws = sec["raw"], sec["ws"]
    for _ in range(2):  # the second time replaces the first (a marked export)
        r = raw.call("export_space", [BASE, [], "cpu-basic", "space-a", True])
        assert r["ok"] and "exported" in text(r) and "exports/space-a" in text(r), r
    # replaced from the page, the old copy is not kept (each is a copy of a base; the limit counts names)
    assert (ws / "exports" / "space-a" / "app.py").is_file() and not (ws / "exports" / "space-a.previous").exists()
    r = raw.call("export_space", [BASE, [], "cpu-basic", "space-a", False])
    refused(r, "not empty")


# ---------------------------------------------------------------------------- 3. publishing
@pytest.mark.parametrize("folder", ["", "{ws}", "{ws}/uploads", "uploads", "{outside}", "../outside", "notmine",
                                    "space-missing"])
def test_publish_never_lends_the_server_token_nor_uploads_other_folders(guard, folder):
    raw = guard["raw"]
    folder = folder.format(ws=guard["ws"], outside=guard["outside"])
    for token in ("", USER_TOKEN):
        if folder == "" and token:
            continue  # an empty folder with a typed token exports now: see the positive test
        r = raw.call("do_push", ["Space", "alice/leak", token, False, False, folder, BASE, [], "cpu-basic"])
        t = refused(r)
        assert SERVER_TOKEN not in t and USER_TOKEN not in t
        if not token:
            assert "no Hugging Face token" in t, t


def test_publish_an_export_with_the_typed_token_is_private(sec):
    raw, hub = sec["raw"], sec["hub"]
    r = raw.call("export_space", [BASE, [], "cpu-basic", "space-pub", False])
    assert r["ok"], r
    r = raw.call("do_push", ["Space", "alice/pub", USER_TOKEN, True, False, "space-pub", BASE, [], "cpu-basic"])
    assert r["ok"] and "pushed to" in text(r) and USER_TOKEN not in text(r), r
    repo = hub.repo("space", "alice/pub")
    assert repo is not None and repo.private
    assert ".studio-export" not in repo.files and "app.py" in repo.files
    assert f"Bearer {SERVER_TOKEN}" not in hub.auth_seen


# ---------------------------------------------------------------------------- 4. reads
READS = ["{outside}/secret.jsonl", "../outside/secret.jsonl", "uploads/../../outside/secret.jsonl",
         "uploads/secret-link.jsonl", "uploads/dir-link/secret.jsonl", "/etc/passwd", "/proc/self/environ",
         "data", "uploads", "uploads/a\x00b.jsonl", "~/.bashrc", "x" * 5000]


@pytest.mark.parametrize("path", READS)
def test_data_files_only_from_uploads_and_data(guard, path):
    raw = guard["raw"]
    path = path.format(outside=guard["outside"])
    r1 = raw.preview(path)
    r2 = raw.call("build_recipe", [{"train_file": path}])
    r3 = raw.call("build_recipe", [{"eval_file": path}])
    for r in (r1, r2, r3):
        t = refused(r)
        assert "root:" not in t and "HF_TOKEN" not in t and SERVER_TOKEN not in t


def test_missing_and_not_allowed_read_the_same(guard):
    """The refusal does not tell a missing file from one that exists outside: the same text."""
    sec = guard
    raw = sec["raw"]
    msgs = []
    for p in (f"{sec['outside']}/secret.jsonl", f"{sec['outside']}/nothing-here.jsonl", "/etc/passwd",
              "/etc/no-such-file"):
        t = raw.preview(p)["data"][0]
        msgs.append(t.replace(p, "<path>"))
    assert len(set(msgs)) == 1, msgs


def test_uploaded_data_is_previewed(sec):
    raw = sec["raw"]
    f = raw.upload("mine.jsonl", b'{"prompt": "Best month for Lisbon?", "response": "May."}\n')
    r = raw.preview("", file=f)
    assert r["ok"], r
    stored, preview = r["data"]
    assert (sec["ws"] / stored).parent == sec["ws"] / "uploads" and "✓" in preview and "Best month" in preview
    r = raw.preview(f"uploads/{Path(stored).name}")
    assert "✓" in r["data"][0]
    # a file that is not JSONL: the message names it as the workspace does, not by the server's folders
    r = raw.preview("data/make_data.py")
    msg = r["data"][0]
    assert "bad data file" in msg and "data/make_data.py" in msg, msg
    assert str(sec["ws"].resolve()) not in msg and str(Path(__file__).resolve().parents[1]) not in msg, msg


def test_gradio_refuses_files_it_did_not_receive(guard):
    raw = guard["raw"]
    fake = {"path": str(guard["outside"] / "secret.jsonl"), "orig_name": "x.jsonl",
            "meta": {"_type": "gradio.FileData"}}
    r = raw.preview("", file=fake)
    t = text(r)
    assert not r["ok"] and SECRET not in t, t[:2000]


def test_file_route_serves_no_workspace_or_outside_file(guard):
    """Gradio's file route gives out uploads it received, not files of the workspace or elsewhere."""
    raw = guard["raw"]
    for p in (guard["outside"] / "secret.jsonl", guard["ws"] / "uploads" / "good.jsonl",
              guard["ws"] / "uploads" / "secret-link.jsonl", guard["ws"] / "adapters" / ADAPTERS[0] / "metadata.json",
              Path("/etc/passwd")):
        r = raw.http.get(f"/gradio_api/file={p}")
        assert r.status_code in (403, 404), (p, r.status_code)
        assert SECRET not in r.text and "root:" not in r.text


# ---------------------------------------------------------------------------- 5. templates
@pytest.mark.parametrize("template,fragment", [
    ("{prompt:>20000000}{response}", "format spec"), ("{prompt!r}{response}", "format spec"),
    ("{prompt}{response:^99999999}", "format spec"), ("{prompt.__class__}{response}", "unknown placeholder"),
    ("{prompt[0]}{response}", "unknown placeholder"), ("{prompt}" * 400 + "{response}", "once"),
    ("x" * 5000 + "{prompt}{response}", "at most 4,000"),
])
def test_template_specs_and_size_refused(guard, template, fragment):
    raw = guard["raw"]
    r = raw.preview("uploads/good.jsonl", template=template)
    refused(r, fragment)
    refused(raw.call("build_recipe", [{"template": template, "train_file": "uploads/good.jsonl"}]), fragment)


# ---------------------------------------------------------------------------- 6. one bad folder
def test_symlink_loop_fifo_and_linked_adapter_do_not_take_the_app_down(guard):
    """They were there when the app started; the library lists them as refused, chats still run."""
    sec = guard
    raw = sec["raw"]
    r = raw.call("refresh_pickers", [BASE, "base", "base"])
    assert r["ok"], r
    t = text(r)
    names = [c[0] for c in r["data"][1]["choices"]]
    assert set(ADAPTERS) <= set(names) and not {"loop", "fifo-meta", "linked"} & set(names), names
    assert "loop" in t and "linked" in t and "fifo-meta" in t and "not followed" in t, t[:3000]
    r = raw.call("library", [])
    assert r["ok"], r
    for v in ["base"] + ADAPTERS:
        assert answer_of(raw.chat(variant=v)).strip()
    r = raw.chat(variant="fifo-meta")
    refused(r, "fifo-meta")


# ---------------------------------------------------------------------------- 7. isolation
def _compare_mode(stats: str) -> str:
    return "batch" if "one batch of 2" in stats else "interleaved"


@pytest.mark.parametrize("bad", [{"seed": 2**31}, {"seed": -1}, {"seed": 2**63},
                                 {"temperature": float("nan")}, {"temperature": float("inf")}])
def test_a_bad_request_changes_nothing_for_others(guard, bad):
    sec = guard
    raw = sec["raw"]
    a, b = ADAPTERS[0], ADAPTERS[-1]
    before = raw.chat(compare=True, variant=a, variant_b=b)
    mode = _compare_mode(before["data"][3])
    r = raw.chat(compare=True, variant=a, variant_b=b, **bad)
    refused(r)
    after = raw.chat(compare=True, variant=a, variant_b=b)
    assert _compare_mode(after["data"][3]) == mode, after["data"][3]
    assert after["data"][0] == before["data"][0] and after["data"][1] == before["data"][1]


def test_two_users_at_once(guard):
    """While one user sends bad requests, another chats: the second user's answers are those of a quiet
    app, and the first user's failures are their own."""
    sec = guard
    other = Raw(sec["url"])
    quiet = answer_of(other.chat(variant=ADAPTERS[0], max_new=12))
    results, errors = {}, []

    def attacker():
        try:
            for i in range(4):
                results[f"a{i}"] = sec["raw"].chat(compare=True, variant=ADAPTERS[0], variant_b="base",
                                                   seed=2**40 + i)
                results[f"p{i}"] = sec["raw"].preview("/etc/passwd", base_model=BASE, trust=True)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=attacker)
    t.start()
    answers = [answer_of(other.chat(variant=ADAPTERS[0], max_new=12)) for _ in range(3)]
    t.join(300)
    assert not errors and not t.is_alive()
    assert answers == [quiet] * 3
    for k, r in results.items():
        refused(r)


# ---------------------------------------------------------------------------- 8. limits
def test_prompt_characters_capped_before_tokenization(guard):
    sec = guard
    raw = sec["raw"]
    hist = [{"role": r, "metadata": None, "options": None, "content": [{"type": "text", "text": c * 20_000}]}
            for r, c in (("user", "x"), ("assistant", "y"))]  # a history the page never sent: also counted
    for r in (raw.chat(message="word " * 8_000),  # 40,000 characters: over the 32,000 default
              raw.call("chat", ["hi", hist, [], BASE, "base", "base", False, 0.0, 1.0, 0, 8, 1.0, 0])):
        assert r["ok"], r
        stats = r["data"][3]  # the panes and the box give the user's own text back, unchanged
        assert stats.startswith("⚠") and "32,000" in stats and len(stats) < 500, stats[:1000]
        assert r["data"][0] in ([], hist)


def test_job_ids_validated(guard):
    sec = guard
    raw = sec["raw"]
    for job in ("x" * 5000, "../runs", "a/b", "", ".hidden", "a\x00b"):
        r = raw.call("job_summary", [job])
        assert r["ok"] and r["data"][0]["status"] == "unknown", r
        assert "no job" in r["data"][0]["error"] and len(r["data"][0]["error"]) < 300, r
        for fn in ("cancel_build", "resume_build"):
            t = refused(raw.call(fn, [job]))
            assert len(t) < 2000


def test_request_body_capped_before_login(guard):
    """A body over the limit gets 413 without credentials (before the login check runs)."""
    sec = guard
    anon = httpx.Client(base_url=sec["url"], timeout=60)
    big = b"0" * (9 * 1024 * 1024)
    r = anon.post("/gradio_api/upload", files={"files": ("big.jsonl", big)})
    assert r.status_code == 413, (r.status_code, r.text[:300])
    r = anon.post("/login", content=big, headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    r = sec["raw"].http.post("/gradio_api/upload", files={"files": ("big.jsonl", big)})
    assert r.status_code == 413
    assert sec["raw"].http.post("/gradio_api/upload", files={"files": ("ok.jsonl", b"{}\n")}).status_code == 200


def _can_bind(addr: str) -> bool:
    try:
        with socket.socket() as s:
            s.bind((addr, 0))
        return True
    except OSError:
        return False


def test_failed_logins_slowed_per_client(guard):
    """After 5 wrong passwords a client waits (429, even with the right password); another client at the
    same moment logs in at once."""
    sec = guard
    assert _can_bind("127.0.0.2"), "loopback 127.0.0.2 is needed to act as a second client"
    attacker = Raw(sec["url"], user=None, local_address="127.0.0.2")
    codes = [attacker.login(USER, f"guess-{i}").status_code for i in range(8)]
    assert codes[:5] == [400] * 5 and set(codes[5:]) == {429}, codes
    r = attacker.login(USER, PASSWORD)
    assert r.status_code == 429 and "try again" in r.text
    user = Raw(sec["url"])  # 127.0.0.1
    assert answer_of(user.chat()).strip()


# ---------------------------------------------------------------------------- every handler
HOSTILE = {"str": "../../../outside/secret.jsonl", "num": 2**40, "bool": True}


def test_every_handler_survives_hostile_input(guard):
    """Each backend handler of the page, the hidden ones included, called by fn_index with hostile values
    in every input: each answers (a result or a message), none leaks, none writes, and the app serves."""
    raw = guard["raw"]
    secret_path = str(guard["outside"] / "secret.jsonl")
    called = set()
    for i, d in enumerate(raw.cfg["dependencies"]):
        if not d.get("backend_fn"):
            continue
        data = []
        for cid in d["inputs"]:
            comp = raw.comps[cid]
            v = comp.get("props", {}).get("value")
            kind = comp.get("type")
            if kind in ("checkbox",):
                data.append(True)
            elif kind in ("number", "slider"):
                data.append(2**40)
            elif kind in ("file", "uploadbutton"):
                data.append({"path": secret_path, "orig_name": "x.jsonl", "meta": {"_type": "gradio.FileData"}})
            elif kind in ("textbox", "dropdown", "code", "radio"):
                data.append(secret_path if i % 2 else "../" * 8 + "etc/passwd")
            elif kind == "checkboxgroup":
                data.append(["../../x"])
            elif kind in ("state", "api", "json"):
                data.append({"train_file": secret_path, "base_model": "/", "trust_remote_code": True}
                            if d.get("api_name") == "build_recipe" else v)
            else:
                data.append(v)
        r = raw.call(i, data)
        t = text(r)
        assert SECRET not in t and "root:x" not in t and "Traceback" not in t, (d.get("api_name"), t[:1000])
        called.add(d.get("api_name"))
    hidden = {d.get("api_name") for d in raw.cfg["dependencies"] if d.get("api_visibility") != "public"}
    assert {"do_push", "chat", "preview_data", "build_recipe", "export_space"} <= called and hidden & called
    assert not (guard["ws"] / "runs").exists() or not list((guard["ws"] / "runs").iterdir())


# ---------------------------------------------------------------------------- the layer itself
def test_policy_paths_in_process(tmp_path):
    """artifacts.Policy on its own: data files, model folders, exports, remote code and tokens."""
    from artifacts import Policy, PolicyError, Workspace
    ws = Workspace(tmp_path / "ws")
    for d in ("uploads", "data", "models/m", "exports/e"):
        (ws.root / d).mkdir(parents=True)
    (ws.root / "uploads" / "a.jsonl").write_text("{}\n")
    (ws.root / "exports" / "e" / ".studio-export").write_text("")
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "b.jsonl").write_text("{}\n")
    os.mkfifo(ws.root / "uploads" / "fifo.jsonl")
    p = Policy(ws)
    assert p.data_file("uploads/a.jsonl") == (ws.root / "uploads" / "a.jsonl").resolve()
    assert p.data_file(str(ws.root / "uploads" / "a.jsonl")).name == "a.jsonl"
    for bad in ("uploads/fifo.jsonl", "uploads", str(tmp_path / "extra" / "b.jsonl"), "uploads/../../extra/b.jsonl",
                "a\x00b", "", None, 7):
        with pytest.raises(PolicyError):
            p.data_file(bad)
    assert Policy(ws, data_roots=(tmp_path / "extra",)).data_file(str(tmp_path / "extra" / "b.jsonl"))
    assert p.base_model("models/m") == str(ws.root / "models" / "m")
    assert p.base_model("someone/some-model") == "someone/some-model"
    for bad in ("uploads/a.jsonl", "models/../uploads", "models/nope", "/", str(tmp_path / "extra"), "a/b/c", "../x"):
        with pytest.raises(PolicyError):
            p.base_model(bad)
    assert Policy(ws, model_roots=(tmp_path,)).base_model(str(tmp_path / "extra")) == str(tmp_path / "extra")
    assert p.export_dir("e") == ws.root / "exports" / "e" == p.published_export(str(ws.root / "exports" / "e"))
    os.symlink(tmp_path / "extra", ws.root / "exports" / "link")
    os.symlink(tmp_path / "nothing-yet", ws.root / "exports" / "dangling")
    for bad in ("../e", "/tmp/e", "exports/../models/m", ".hidden", "e.previous", "link", "dangling"):
        with pytest.raises(PolicyError):
            p.export_dir(bad)
        with pytest.raises(PolicyError):
            p.new_export(bad)
    with pytest.raises(PolicyError, match="--allow-remote-code"):
        p.trust_remote_code(True)
    assert Policy(ws, allow_remote_code=True).trust_remote_code(True)
    with pytest.raises(PolicyError, match="token"):
        p.hub_token("", SERVER_TOKEN)
    assert p.hub_token(USER_TOKEN, SERVER_TOKEN) == USER_TOKEN
    assert Policy(ws, allow_server_token=True).hub_token("", SERVER_TOKEN) == SERVER_TOKEN


def test_messages_carry_no_cxx_source_paths():
    from artifacts import clean_message
    msg = (r"D:\a\_work\1\s\onnxruntime\core\framework\adapter_format.cc:123 onnxruntime::Status "
           r"onnxruntime::lora::LoadFromFile(const char*) Invalid adapter file")
    assert clean_message(msg) == "Invalid adapter file"
    assert clean_message("[ONNXRuntimeError] : 1 : FAIL : /src/onnxruntime/core/session/lora.cc:94 void f(int) bad "
                         "shape (1, 2)") == "[ONNXRuntimeError] : 1 : FAIL : bad shape (1, 2)"
    assert clean_message("plain (message)") == "plain (message)"


def test_library_listing_uses_lstat(tmp_path):
    """A loop, a FIFO metadata.json, a symlinked folder and a plain file among adapters: listed as refused
    or skipped, never followed, never blocking; the good adapter stays ok."""
    import artifacts
    from app_helpers import ROOT
    ads = tmp_path / "adapters"
    ads.mkdir()
    shutil.copytree(ROOT / "adapters" / ADAPTERS[0], ads / "good")
    os.symlink("loop", ads / "loop")
    os.symlink(ROOT / "adapters" / ADAPTERS[0], ads / "linked")
    (ads / "fifo").mkdir()
    os.mkfifo(ads / "fifo" / "metadata.json")
    (ads / "file.txt").write_text("x")
    infos = {a.name: a for a in artifacts.list_adapters(ads, ROOT / "models" / BASE)}
    assert set(infos) == {"good", "loop", "linked", "fifo"}
    assert infos["good"].ok and not any(infos[n].ok for n in ("loop", "linked", "fifo"))
    assert "not followed" in infos["linked"].reason and "not a regular file" in infos["fifo"].reason
    artifacts.delete_adapter(ads, "linked")  # the link goes, its target stays
    assert not os.path.lexists(ads / "linked") and (ROOT / "adapters" / ADAPTERS[0] / "metadata.json").exists()


def test_builds_need_free_disk_and_protected_adapters_stay(tmp_path, monkeypatch):
    """Red team 2026-12-06: back-to-back builds from a shared link filled the disk (~56 MB each on the default
    model, nothing capped), and a build with replace or a delete swapped the shipped adapters. In process:
    a build (and a resume) is refused with what to do when the disk has less than $STUDIO_MIN_FREE_GB free;
    protected adapters refuse replace and delete; others do not."""
    from artifacts import LimitError, Policy, PolicyError, Workspace, check_build_room, owner_tag
    from pipeline.recipe import Recipe
    from ui.chat_engine import UIError
    from ui.engine import AppEngine
    ws = Workspace(tmp_path / "ws")
    (ws.root / "data").mkdir(parents=True)
    (ws.root / "data" / "t.jsonl").write_text('{"prompt": "a", "response": "b"}\n')
    (ws.models / "default").mkdir(parents=True)
    (ws.models / "default" / "base.json").write_text("{}")
    for name, protected in (("shipped", True), ("mine", False)):
        (ws.adapters / name).mkdir(parents=True)
        (ws.adapters / name / "metadata.json").write_text(json.dumps({"name": name, "protected": protected}))
    p = Policy(ws)
    with pytest.raises(PolicyError, match="protected"):
        p.adapter_change("shipped")
    p.adapter_change("mine")
    p.adapter_change("../x")  # not a name: left to the library's own refusal
    for look in ("Shipped", "shIpped", "sh1pped", "shipped_", "ship-ped", "SHIPPED."):
        with pytest.raises(PolicyError, match="looks like the protected adapter 'shipped'"):
            p.adapter_lookalike(look)
    for look in ("base", "Base", "BASE", "ba5e", "base_"):
        with pytest.raises(PolicyError, match="looks like 'base'"):
            p.adapter_lookalike(look)
    p.adapter_lookalike("MINE")  # not protected: a user's own names are theirs
    p.adapter_lookalike("shipped-2")  # another name
    p.adapter_lookalike("bases")
    p.adapter_lookalike("shipped")  # the name itself: left to adapter_change / the pipeline's exists check
    # pass 33: beside another user's adapter, a look-alike name is refused to everyone but its owner
    (ws.adapters / "vault").mkdir()
    (ws.adapters / "vault" / "metadata.json").write_text(json.dumps({"name": "vault", "owner": owner_tag(ws, "9.9.9.9")}))
    with pytest.raises(PolicyError, match="looks like another user's adapter 'vault'"):
        p.adapter_lookalike("vau1t", client="8.8.8.8")
    p.adapter_lookalike("vau1t", client="9.9.9.9")  # its owner's own names
    p.adapter_lookalike("vau1t")  # the operator
    (ws.adapters / "cloud").mkdir()  # pass 34: a look-alike inside a look-alike pair ('cI' of 'cl')
    (ws.adapters / "cloud" / "metadata.json").write_text(json.dumps({"name": "cloud", "owner": owner_tag(ws, "9.9.9.9")}))
    for look in ("cIoud", "c1oud", "cioud", "doud", "cl0ud", "CLOUD"):  # and 9/q/g, 2/z (pass 35) below
        with pytest.raises(PolicyError, match="looks like another user's adapter 'cloud'"):
            p.adapter_lookalike(look, client="8.8.8.8")
    (ws.adapters / "vwx").mkdir()  # pass 36: pairs spelled out, not folded left to right ('vvvx' was 'wvx')
    (ws.adapters / "vwx" / "metadata.json").write_text(json.dumps({"name": "vwx", "owner": owner_tag(ws, "9.9.9.9")}))
    for look in ("vvvx", "wvx", "VVVX"):
        with pytest.raises(PolicyError, match="looks like another user's adapter 'vwx'"):
            p.adapter_lookalike(look, client="8.8.8.8")
    (ws.adapters / "gaze").mkdir()
    (ws.adapters / "gaze" / "metadata.json").write_text(json.dumps({"name": "gaze", "owner": owner_tag(ws, "9.9.9.9")}))
    for look in ("9aze", "qaze", "ga2e", "9a2e"):
        with pytest.raises(PolicyError, match="looks like another user's adapter 'gaze'"):
            p.adapter_lookalike(look, client="8.8.8.8")
    with pytest.raises(LimitError, match="STUDIO_MIN_FREE_GB"):
        check_build_room(ws.root, {"STUDIO_MIN_FREE_GB": str(shutil.disk_usage(ws.root).free / 1e9 + 1)})
    check_build_room(ws.root, {"STUDIO_MIN_FREE_GB": "0"})
    eng = AppEngine(ws)
    try:
        r = Recipe()
        r.train_file, r.adapter_name, r.replace, r.base_model = "data/t.jsonl", "shipped", True, ""
        with pytest.raises(UIError, match="protected"):
            eng.start(r)
        with pytest.raises(UIError, match="protected"):
            eng.delete_adapter("shipped")
        assert (ws.adapters / "shipped" / "metadata.json").exists()
        monkeypatch.setenv("STUDIO_MIN_FREE_GB", "1e9")
        r.adapter_name, r.replace = "new-one", False
        with pytest.raises(UIError, match="not enough free disk"):
            eng.start(r)
        assert not ws.runs.exists() or not any(ws.runs.iterdir())
        eng.delete_adapter("mine")
        assert not (ws.adapters / "mine").exists()
    finally:
        eng.close() if hasattr(eng, "close") else None


# ---------------------------------------------------------------------------- red-team pass 18 (2026-12-07)
def test_routes_this_app_does_not_use_are_not_served(sec):
    """Gradio's custom_component route answered without login and printed its raw path into the operator's log
    (newlines and terminal escapes included); /monitoring/summary told any signed-in client what every session
    did. Both, and the other route families this app has no use for, are 404 before Gradio; the page works."""
    raw, log = sec["raw"], sec["log"]
    before = log.stat().st_size
    anon = httpx.Client(base_url=sec["url"], timeout=30)
    for path in ("/gradio_api/custom_component/x%1B%5B31mMARK%0Afake-line/client/x/y",
                 "/custom_component/x/client/x/y", "/gradio_api/monitoring", "/monitoring/summary",
                 "/gradio_api/monitoring/summary", "/monitoring/somekey", "/gradio_api/profiling/summary",
                 "/gradio_api/vibe-code", "/gradio_api/dev/reload", "/gradio_api/stream/abc",
                 "/gradio_api/run-history/buckets"):
        for c in (anon, raw.http):
            r = c.get(path)
            assert r.status_code == 404, (path, r.status_code, r.text[:200])
    assert b"MARK" not in log.read_bytes()[before:]
    assert raw.http.get("/config").status_code == 200 and answer_of(raw.chat()).strip()


def test_a_lone_surrogate_among_a_files_keys_gets_a_message(guard):
    """A data file whose key is "\\ud800" made the data check's message (which names the keys) unsendable:
    Gradio's orjson cut the stream and logged a traceback. Now the message comes, the key shown replaced."""
    raw, log = guard["raw"], guard["log"]
    before = log.stat().st_size
    f = raw.upload("k.jsonl", b'{"prompt": "a", "response": "b", "\\ud800": 1}\n')
    r = raw.preview("", file=f)
    t = refused(r, "unexpected key")
    assert "\ufffd" in t, t[:500]
    r = raw.preview("", file=raw.upload("k2.jsonl", b'{"\\udfff": 1}\n'))
    refused(r, "cannot tell the format")
    assert b"Traceback" not in log.read_bytes()[before:]


def test_a_logout_ends_only_the_callers_session(sec):
    """Red-team pass 19: Gradio's /logout ends every session of the user name by default, and everyone on a
    shared link is that one user, so one GET /logout (a second) kept every other user signed out. Now it ends
    the caller's session only."""
    victim, other = Raw(sec["url"]), Raw(sec["url"])
    assert victim.http.get("/gradio_api/info").status_code == 200
    for path in ("/logout", "/logout?all_session=true", "/gradio_api/logout?all_session=1"):
        r = other.http.get(path, follow_redirects=False)
        assert r.status_code in (302, 404), (path, r.status_code)
        assert victim.http.get("/gradio_api/info").status_code == 200, path
        assert answer_of(victim.chat()).strip()
        other.login(USER, PASSWORD)
    r = victim.http.get("/logout", follow_redirects=False)
    assert r.status_code == 302 and victim.http.get("/gradio_api/info").status_code == 401
    assert other.http.get("/gradio_api/info").status_code == 200


def test_a_build_from_the_page_records_who_asked(sec):
    """Red-team pass 20: runs/ is shared, so each run records its client (the public address a local proxy
    forwarded, deploy/clients.py) for make_room's per-client share of resumable runs."""
    from pipeline.jobs import client_of_run
    raw = Raw(sec["url"])
    raw.http.headers["x-forwarded-for"] = "81.2.69.144"
    r = raw.call("build_recipe", [{"lora.max_steps": 1, "adapter_name": "whoasked"}])
    assert r["ok"] and r["data"][0]["ok"], r
    job = r["data"][0]["job_id"]
    try:
        assert client_of_run(sec["ws"] / "runs" / job) == "81.2.69.144"
    finally:
        raw.call("cancel_build", [job])
        shutil.rmtree(sec["ws"] / "runs" / job, ignore_errors=True)
        shutil.rmtree(sec["ws"] / "adapters" / "whoasked", ignore_errors=True)


def test_unknown_handlers_log_one_line_not_a_traceback(sec):
    """Red-team pass 20: an unknown fn_index or api_name made Gradio raise, and each request logged a 5 kB
    traceback (1.7 MB/s from four threads). Now: a plain 500, and at most one short line a second."""
    raw, log = Raw(sec["url"]), sec["log"]
    before = log.stat().st_size
    bad = [("/gradio_api/queue/join", {"data": [], "fn_index": 9999, "session_hash": "a"}),
           ("/gradio_api/call/v2/nonexistent", {}), ("/gradio_api/call/nonexistent", {"data": []}),
           ("/gradio_api/run/nonexistent", {"data": []})]
    # pass 21: these fail inside a stream Gradio has started (an unknown session or event)
    streams = ["/gradio_api/queue/data?session_hash=nobody", "/gradio_api/call/job_summary/deadbeef",
               "/gradio_api/call/v2/job_summary/deadbeef"]
    for _ in range(25):
        for path, body in bad:
            r = raw.http.post(path, json=body)
            assert r.status_code in (404, 500) and "Traceback" not in r.text, (path, r.status_code, r.text[:300])
        for path in streams:
            try:
                r = raw.http.get(path)
            except httpx.HTTPError:  # (an answer cut where it stopped)
                continue
            assert "Traceback" not in r.text, (path, r.status_code, r.text[:300])
    grown = log.read_bytes()[before:]
    assert b"Traceback" not in grown and len(grown) < 3000, grown[-3000:]
    assert answer_of(raw.chat()).strip()


def test_inputs_that_fail_gradios_checks_log_one_short_line(sec):
    """Red-team pass 22: Gradio printed the traceback of every handler input that failed its checks (too few
    inputs, a value not among a dropdown's choices, a number out of bounds), the request's inputs repeated in the
    message: 853 MB of log in 8 s from one client. Now one short line a second."""
    raw, log = Raw(sec["url"]), sec["log"]
    before = log.stat().st_size
    deps = raw.cfg["dependencies"]
    quick = next(i for i, d in enumerate(deps) if d.get("backend_fn") and d.get("queue") is False and d["inputs"])
    chat = raw.fn("chat")
    for i in range(20):
        body = {"fn_index": quick, "data": ["A" * 100_000], "session_hash": f"p22{i:07d}"}
        r = raw.http.post("/gradio_api/run/predict", json=body)
        assert "Traceback" not in r.text and "AAAA" not in r.text, r.text[:300]
        bad = raw.defaults(chat, chat_base="no-such-base" * 1000)
        r = raw.call(chat, bad)
        assert "Traceback" not in json.dumps(r), json.dumps(r)[:300]
    grown = log.read_bytes()[before:]
    # the first of each kind with its traceback, cut to 4,000 characters (pass 23: a real bug must still show
    # where); then one short line a second per kind
    assert grown.count(b"Traceback") <= 2 and b"A" * 2100 not in grown and len(grown) < 12_000, \
        (len(grown), grown[-2000:])
    assert answer_of(raw.chat()).strip()


def test_noise_any_connection_can_cause_is_logged_once_a_second(sec):
    """Red-team pass 23: an `Upgrade:` header made uvicorn log two lines per request (~386 kB/s from one
    connection, no login), a bad request line one; now at most one a second each. A failed login is logged
    (it was not), also at most once a second."""
    log = sec["log"]
    port = int(sec["url"].rsplit(":", 1)[1])
    before = log.stat().st_size
    for req in (b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n" * 100,
                b"GARBAGE\x01 / HTTP/1.1\r\n\r\n"):
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port)) as c:
                c.sendall(req)
                c.settimeout(10)
                got = b""
                try:
                    while got.count(b"HTTP/1.1 ") < (100 if req.startswith(b"GET") else 1):
                        chunk = c.recv(65536)
                        if not chunk:
                            break
                        got += chunk
                except OSError:
                    pass
    grown = log.read_bytes()[before:]
    assert len(grown) < 2000, (len(grown), grown[-1500:])
    before = log.stat().st_size
    for _ in range(3):
        assert Raw(sec["url"], user=None).login(USER, "wrong").status_code in (400, 401, 429)
    grown = log.read_bytes()[before:]
    assert b"a login failed" in grown and grown.count(b"a login failed") <= 2, grown[-1000:]
