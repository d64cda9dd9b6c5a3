"""The newcomer path in a real browser (Playwright + Debian's chromium), on the CPU, with the embedded default:
a dataset in another voice (a minstrel who answers in rhyme) written here and uploaded in the Build tab,
Start with the defaults (max steps lowered through the form), a reload mid-build finds the form and the job
view again, the end of the Build view shows base vs adapter measured on the served model, the adapter is
listed in Chat under `default` next to `travel` and `pirate` and compared with the base (panes titled with
their variants), and `adapters/travel` is byte-identical. Also the page-load restore never overwrites a form
the user already edited (the load answer is held back while the user types), and the restore and
evaluation handlers through gradio_client.

The app runs on a COPY of the workspace (models/, adapters/, data/ copied into a temporary folder), so the
repository is never written."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import app_helpers as base_tests  # noqa: E402  (free_port, start_app, stop_app, chat)

ROOT = Path(__file__).resolve().parent.parent
SOURCE = base_tests.SOURCE  # $APP_TEST_SOURCE: a folder with models/ and adapters/ (default: the repository)
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
STEPS = 30  # lowered through the form (the demo preset's 600 take many minutes on 2 shared CPU cores)
PROMPT = "What do you think of the rain?"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1800)]

TOPICS = ["the rain", "the sea", "a cat", "the moon", "bread", "the wind", "a dog", "the snow", "an apple",
          "the sun", "a river", "the forest", "a horse", "cheese", "the stars", "a garden", "tea", "a bird",
          "the mountains", "soup", "a candle", "the spring", "a boat", "honey", "the autumn", "a bridge",
          "an owl", "the market", "a song", "the winter"]
RHYMES = [("day", "way"), ("light", "night"), ("sky", "by"), ("song", "long"), ("tree", "free"),
          ("heart", "art"), ("town", "crown"), ("gold", "old")]
ASKS = ["What do you think of {t}?", "Tell me about {t}.", "Can you describe {t}?", "Say something about {t}."]


def minstrel_rows() -> list[dict]:
    """60 prompt/response pairs in the voice of a minstrel who answers in rhyme."""
    rows = []
    for i in range(60):
        t = TOPICS[i % len(TOPICS)]
        a, b = RHYMES[i % len(RHYMES)]
        ask = ASKS[(i // len(TOPICS)) * 2 + i % 2]
        rows.append({"prompt": ask.format(t=t),
                     "response": f"Hey nonny, hark! I sing of {t} this {a}, / "
                                 f"of {t} I sing along the {b}. Fa la la!"})
    return rows


def tree_hashes(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def copy_workspace(ws: Path) -> Path:
    """models/default, models/default-hf, adapters/travel and pirate (from APP_TEST_SOURCE, default: the
    repository) and data/: copies, nothing linked."""
    (ws / "models").mkdir(parents=True)
    (ws / "adapters").mkdir()
    for sub in ("models/default", "models/default-hf", "adapters/travel", "adapters/pirate", "data"):
        src = SOURCE / sub if (SOURCE / sub).exists() else ROOT / sub
        if not src.exists():
            pytest.fail(f"{src} missing")
        shutil.copytree(src, ws / sub)
    return ws


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing (apt-get install -y chromium)")
    root = tmp_path_factory.mktemp("newcomer")
    ws = copy_workspace(root / "ws")
    repo_travel = tree_hashes(SOURCE / "adapters" / "travel")
    travel = tree_hashes(ws / "adapters" / "travel")
    data = root / "minstrel.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in minstrel_rows()))
    port = base_tests.free_port()
    proc = base_tests.start_app(ws, port, root / "app.log")
    yield {"url": f"http://127.0.0.1:{port}/", "ws": ws, "log": root / "app.log", "data": data,
           "travel": travel, "repo_travel": repo_travel, "state": {}}
    base_tests.stop_app(proc, ws)


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client
    return Client(server["url"], verbose=False)


def shots(server) -> Path:
    """Where screenshots go: $NEWCOMER_SHOTS, else the temporary folder (never the repository)."""
    d = Path(os.environ.get("NEWCOMER_SHOTS") or server["ws"].parent / "shots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def new_page(browser, url):
    pg = browser.new_page(viewport={"width": 1400, "height": 1200})
    pg.set_default_timeout(60_000)
    pg.goto(url)
    pg.wait_for_selector("#chat-input textarea")
    return pg


def field(page, eid: str):
    return page.locator(f"#{eid} input:not([type=file]):not([type=checkbox]):not([type=radio]), #{eid} textarea").first


def choose(page, elem_id: str, value: str) -> None:
    """Picks `value` in a Gradio dropdown (again when its options were re-rendered under the click)."""
    for attempt in range(3):
        page.locator(f"#{elem_id} input[role=combobox]").click()
        try:
            page.get_by_role("option", name=value, exact=True).first.click(timeout=10_000)
            break
        except Exception:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
    page.wait_for_function(
        "([id, v]) => document.querySelector(`#${id} input[role=combobox]`).value === v", arg=[elem_id, value])


def build_tab(page):
    page.get_by_role("tab", name="Build").click()
    page.wait_for_selector("#build-start", state="visible")


def pane_title(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} [data-testid=block-label]").first.inner_text().strip()


def wait_answers(page, n_panes: int) -> list[str]:
    page.wait_for_function("""(n) => {
        const t = document.querySelector('#chat-stats').innerText;
        const lines = t.split('\\n').filter(l => l.trim());
        return lines.length >= n && lines.every(l => l.includes('done ('));
    }""", arg=n_panes)
    return [page.locator(f"#{p} [data-testid='bot']").last.inner_text().strip()
            for p in ("chat-bot-a", "chat-bot-b")[:n_panes]]


def test_newcomer_build_reload_chat_compare(server, browser, client):
    page = new_page(browser, server["url"])
    build_tab(page)
    # the default choice: a new adapter on the published base `default`
    assert page.locator("#build-mode input:checked").get_attribute("value") == "New adapter on a base"
    assert page.locator("#build-base input[role=combobox]").input_value() == "default"
    assert not page.locator("#build-group-awq").is_visible()
    assert "demo" in page.inner_text("#build-preset-note")

    page.locator("#build-upload input[type=file]").set_input_files(str(server["data"]))
    page.wait_for_function("() => /uploads\\/minstrel-/.test(document.querySelector("
                           "'#build-train-file input, #build-train-file textarea').value)")
    train_file = field(page, "build-train-file").input_value()
    page.wait_for_function("() => /held-out: 20 of 60 examples carved from the train file/"
                           ".test(document.querySelector('#build-data-preview').innerText)")
    assert field(page, "build-adapter-name").input_value() == ""
    page.wait_for_function("() => /minstrel/.test(document.querySelector("
                           "'#build-adapter-name input, #build-adapter-name textarea').placeholder)")
    field(page, "build-lora-max-steps").fill(str(STEPS))
    field(page, "build-lora-max-steps").press("Tab")
    page.wait_for_function("(n) => document.querySelector('#build-command').innerText.includes("
                           "'--lora.max_steps ' + n)", arg=STEPS)
    assert train_file in page.inner_text("#build-command")

    page.click("#build-start")
    try:
        page.wait_for_function("() => /minstrel/.test(document.querySelector('#build-job-id input, "
                               "#build-job-id textarea').value)")
    except Exception:
        pytest.fail("no job started: " + page.inner_text("#build-status"))
    job = field(page, "build-job-id").input_value()
    page.wait_for_function("() => /step \\d+: loss/.test(document.querySelector('#build-log textarea').value)",
                           timeout=600_000)

    # the restore handler (gradio_client): the running job and its recipe as the form shows it
    job_id, payload, _ = client.predict(api_name="/build_page_state")
    assert job_id == job and payload["job"] == job
    recipe = client.predict(job, api_name="/job_recipe")
    assert recipe["mode"] == "New adapter on a base" and recipe["fields"]["base"] == "default"
    # (the request policy stores the data file as the absolute path it allowed)
    assert recipe["fields"]["train_file"].endswith(train_file) and recipe["fields"]["lora.max_steps"] == STEPS
    assert recipe["fields"]["adapter_name"] == "minstrel"  # resolved when the job was created

    # reload mid-build: the job view and the job's recipe come back (the form was untouched)
    page.reload()
    page.wait_for_selector("#chat-input textarea")
    build_tab(page)
    page.wait_for_function("(j) => document.querySelector('#build-job-id input, #build-job-id textarea')"
                           ".value === j && /: (running|ok)\\b/.test(document.querySelector('#build-status').innerText)",
                           arg=job)
    page.wait_for_function("(f) => document.querySelector('#build-train-file input, #build-train-file textarea')"
                           ".value.endsWith(f)", arg=train_file)
    assert field(page, "build-lora-max-steps").input_value() == str(STEPS)
    assert field(page, "build-adapter-name").input_value() == "minstrel"
    assert "which was running when the page was loaded" in page.inner_text("#build-restore-note")
    page.wait_for_function("() => /step \\d+: loss/.test(document.querySelector('#build-log textarea').value)")

    # the end of the build: skipped stages say why, what the fine-tune changed is shown
    ended = "() => /: (ok|failed|cancelled|interrupted)\\b/.test(document.querySelector('#build-status').innerText)"
    page.wait_for_function(ended, timeout=1200_000)
    assert re.search(r": ok\b", page.inner_text("#build-status")), page.inner_text("#build-status")
    stages = page.inner_text("#build-stages")
    assert re.search(r"awq\s+skipped: building onto base 'default'", stages), stages
    assert re.search(r"onnx\s+skipped: building onto base 'default'", stages), stages
    page.wait_for_function("() => { const t = document.querySelector('#build-log textarea');"  # follows its end
                           " return t.scrollHeight > t.clientHeight && t.scrollTop + t.clientHeight >= t.scrollHeight - 30"
                           " && /job ok/.test(t.value); }")
    page.wait_for_selector("#build-eval .eval-samples")
    base_loss = float(page.inner_text("#build-eval [data-k=base_loss]"))
    adapter_loss = float(page.inner_text("#build-eval [data-k=adapter_loss]"))
    assert adapter_loss < base_loss - 0.5, (base_loss, adapter_loss)
    assert page.locator("#build-eval .eval-sample").count() == 5
    page.screenshot(path=str(shots(server) / "newcomer-build-end.png"), full_page=True)

    # the evaluation handler (gradio_client)
    html = client.predict("minstrel", api_name="/adapter_eval")
    assert "held-out loss" in html and html.count("class='eval-sample'") == 5
    summary = client.predict(job, api_name="/job_summary")
    assert summary["status"] == "ok" and summary["eval"]["adapter_loss"] == pytest.approx(adapter_loss, abs=1e-3)

    # Library: the same evaluation
    page.get_by_role("tab", name="Library").click()
    page.wait_for_function("() => document.querySelector('#lib-adapters').innerText.includes('minstrel')")
    choose(page, "lib-eval-name", "minstrel")
    page.wait_for_function("() => document.querySelectorAll('#lib-eval .eval-sample').length === 5")
    page.screenshot(path=str(shots(server) / "newcomer-library.png"), full_page=True)

    # Chat: listed under `default` next to travel and pirate (opening the tab refreshes the pickers: no ↻ Refresh
    # needed, the page was loaded before the adapter existed); compared with the base
    page.get_by_role("tab", name="Chat").click()
    choose(page, "chat-variant", "minstrel")
    page.locator("#chat-variant input[role=combobox]").click()
    options = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    assert {"base", "minstrel", "travel", "pirate"} <= {o.split("\n")[-1].strip() for o in options}, options
    page.locator("#chat-compare input[type=checkbox]").check()
    page.wait_for_selector("#chat-bot-b", state="visible")
    choose(page, "chat-variant-b", "base")
    assert pane_title(page, "chat-bot-a") == "minstrel"
    assert pane_title(page, "chat-bot-b") == "base (no adapter)"
    page.fill("#chat-input textarea", PROMPT)
    page.click("#chat-send")
    minstrel, base = wait_answers(page, 2)
    assert minstrel and base and minstrel != base
    assert not re.search(r"refused", page.inner_text("#chat-refused"))

    # travel was not touched (nor the repository's)
    assert tree_hashes(server["ws"] / "adapters" / "travel") == server["travel"]
    assert tree_hashes(SOURCE / "adapters" / "travel") == server["repo_travel"]
    page.close()


def page_state_fn(url: str) -> int:
    """The fn_index of the Build tab's page-load handler (/build_page_state) in the app's config."""
    with urllib.request.urlopen(url + "config", timeout=10) as r:
        cfg = json.load(r)
    ids = [d["id"] for d in cfg["dependencies"] if d.get("api_name") == "build_page_state"]
    assert len(ids) == 1, ids
    return ids[0]


def test_late_page_load_answer_keeps_the_users_edits(server, browser, client):
    """A page-load answer that arrives after the user typed leaves the form alone (and says so)."""
    r = client.predict({"train_file": "data/pirate/train.jsonl", "adapter_name": "slow",
                        "lora": {"max_steps": 5000}}, api_name="/build_recipe")
    assert r["ok"], r
    job = r["job_id"]
    try:
        fid = page_state_fn(server["url"])
        held = []

        def hold(route):  # the Build tab's page-load answer waits until the user has typed
            try:
                body = json.loads(route.request.post_data or "{}")
            except ValueError:
                body = {}
            if body.get("fn_index") == fid:
                held.append(route)
            else:
                route.continue_()

        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.set_default_timeout(60_000)
        page.route("**/run/predict*", hold)
        page.goto(server["url"])
        page.wait_for_selector("#chat-input textarea")
        build_tab(page)
        field(page, "build-adapter-name").fill("mine")
        field(page, "build-lora-max-steps").fill("7")
        field(page, "build-lora-max-steps").press("Tab")
        page.wait_for_function("() => document.querySelector('#build-command').innerText.includes("
                               "'--lora.max_steps 7')")
        assert len(held) == 1, "the page-load request was not seen"
        held[0].continue_()
        page.wait_for_function("(j) => document.querySelector('#build-job-id input, #build-job-id textarea')"
                               ".value === j", arg=job)
        page.wait_for_function("() => /keeps your edits/.test(document.querySelector('#build-restore-note')"
                               ".innerText)")
        assert field(page, "build-adapter-name").input_value() == "mine"
        assert field(page, "build-lora-max-steps").input_value() == "7"
        assert not field(page, "build-train-file").input_value().endswith("data/pirate/train.jsonl")
        # the button puts the job's recipe into the form on request
        choose(page, "build-run-select", job)
        page.click("#build-load-recipe")
        page.wait_for_function("() => document.querySelector('#build-train-file input, #build-train-file textarea')"
                               ".value.endsWith('data/pirate/train.jsonl')")
        assert field(page, "build-lora-max-steps").input_value() == "5000"
        page.close()
    finally:
        client.predict(job, api_name="/cancel_build")
