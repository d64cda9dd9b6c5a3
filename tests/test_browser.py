"""The real app in a real browser (Playwright + Debian's chromium): chat, switch adapters, compare,
start and cancel a build, look at the library. Saves screenshots {chat,compare,build,library}.png into
$BROWSER_SHOTS (default: a temporary folder; never into the repository).

Marked `browser` (tests/conftest.py registers it): run.sh deselects these on a GPU machine, which
cannot install chromium. Same workspace and environment overrides as tests/app_helpers.py
(APP_TEST_SOURCE, APP_TEST_BASE, APP_TEST_ADAPTERS)."""
from __future__ import annotations

import os
import re
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import app_helpers as base_tests  # noqa: E402  (workspace and app start-up helpers)

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ADAPTERS = base_tests.ADAPTERS
PROMPT = "Any tips for a rainy day in Lisbon?"

pytestmark = [pytest.mark.timeout(900), pytest.mark.browser]
SHOTS: Path = Path(".")  # set by the `server` fixture


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing (apt-get install -y chromium)")
    global SHOTS
    root = tmp_path_factory.mktemp("browser")
    SHOTS = Path(os.environ.get("BROWSER_SHOTS") or root / "screenshots")
    ws = base_tests.make_workspace(root / "ws")
    port = base_tests.free_port()
    proc = base_tests.start_app(ws, port, root / "app.log")
    yield {"url": f"http://127.0.0.1:{port}/", "ws": ws, "log": root / "app.log"}
    base_tests.stop_app(proc, ws)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(60_000)
        pg.goto(server["url"])
        pg.wait_for_selector("#chat-input textarea")
        yield pg
        browser.close()


def choose(page, elem_id: str, value: str) -> None:
    """Picks `value` in a Gradio dropdown."""
    box = page.locator(f"#{elem_id} input[role=combobox]")
    box.click()
    page.get_by_role("option", name=value, exact=True).first.click()
    page.wait_for_function(
        "([id, v]) => document.querySelector(`#${id} input[role=combobox]`).value === v", arg=[elem_id, value])


def bot_answers(page, elem_id: str) -> list[str]:
    return page.locator(f"#{elem_id} .message.bot, #{elem_id} [data-testid='bot']").all_inner_texts()


def send(page, text: str) -> None:
    page.fill("#chat-input textarea", text)
    page.click("#chat-send")


def wait_answer(page, elem_id: str, n: int) -> str:
    """Waits until pane `elem_id` shows its n-th bot answer and the stats line is final."""
    page.wait_for_function(
        """([id, n]) => {
            const bots = document.querySelectorAll(`#${id} [data-testid='bot']`);
            return bots.length >= n && bots[n - 1].innerText.trim().length > 0;
        }""", arg=[elem_id, n])
    # the stream has ended: every stats line says "done (...)"
    page.wait_for_function("""() => {
        const t = document.querySelector('#chat-stats').innerText;
        const lines = t.split('\\n').filter(l => l.trim());
        return lines.length > 0 && lines.every(l => l.includes('done ('));
    }""")
    return page.locator(f"#{elem_id} [data-testid='bot']").nth(n - 1).inner_text().strip()


def test_chat_switch_adapter_and_compare(page):
    choose(page, "chat-variant", "base")
    send(page, PROMPT)
    base_answer = wait_answer(page, "chat-bot-a", 1)
    assert base_answer
    assert "base" in page.inner_text("#chat-stats")
    page.screenshot(path=str(SHOTS / "chat.png"), full_page=True)

    # switch the adapter: same prompt in a fresh chat, another answer (nothing reloads)
    page.click("#chat-clear")
    page.wait_for_function("() => document.querySelectorAll('#chat-bot-a [data-testid=bot]').length === 0")
    choose(page, "chat-variant", ADAPTERS[0])
    send(page, PROMPT)
    adapter_answer = wait_answer(page, "chat-bot-a", 1)
    assert adapter_answer and adapter_answer != base_answer
    assert ADAPTERS[0] in page.inner_text("#chat-stats")

    # compare: a second pane with its own picker, one input feeds both
    page.click("#chat-clear")
    page.locator("#chat-compare input[type=checkbox]").check()
    page.wait_for_selector("#chat-bot-b", state="visible")
    other = ADAPTERS[1] if len(ADAPTERS) > 1 else "base"
    choose(page, "chat-variant-b", other)
    send(page, PROMPT)
    a = wait_answer(page, "chat-bot-a", 1)
    b = wait_answer(page, "chat-bot-b", 1)
    # one batch of 2 (per-row LoRA): the single answer up to batched-kernel rounding (see test_app)
    assert a[:60] == adapter_answer[:60] and b and b != a
    stats = page.inner_text("#chat-stats")
    assert ADAPTERS[0] in stats and other in stats
    page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)
    page.locator("#chat-compare input[type=checkbox]").uncheck()
    page.wait_for_selector("#chat-bot-b", state="hidden")


def test_empty_message_warns(page):
    page.click("#chat-clear")
    send(page, "   ")
    page.wait_for_function("() => /empty message/.test(document.querySelector('#chat-stats').innerText)")


def test_build_start_and_cancel(page):
    page.get_by_role("tab", name="Build").click()
    page.wait_for_selector("#build-start", state="visible")
    name = f"browser-{uuid.uuid4().hex[:6]}"
    page.fill("#build-adapter-name input, #build-adapter-name textarea", name)
    # the default choice: an adapter onto the published base (AWQ and the ONNX build are skipped)
    assert page.locator("#build-mode input:checked").get_attribute("value") == "New adapter on a base"
    page.fill("#build-lora-max-steps input", "5000")
    page.locator("#build-lora-max-steps input").press("Tab")
    page.wait_for_function(
        "(n) => document.querySelector('#build-command').innerText.includes(n)"
        " && document.querySelector('#build-command').innerText.includes('--lora.max_steps 5000')", arg=name)
    page.click("#build-start")
    page.wait_for_function("() => document.querySelector('#build-job-id input, #build-job-id textarea')"
                           ".value.length > 0")
    job = page.locator("#build-job-id input, #build-job-id textarea").first.input_value()
    assert name in job
    page.wait_for_function("() => /running/.test(document.querySelector('#build-status').innerText)")
    page.wait_for_function(  # the log shows the job's events, read from its events.jsonl
        "() => /started/.test(document.querySelector('#build-log textarea').value)")
    page.wait_for_function(  # training steps arrive: log lines and the loss curve
        "() => (document.querySelector('#build-log textarea').value.match(/step \\d+: loss/g) || []).length >= 3",
        timeout=300_000)
    # the held-out line is drawn on the page that watched the build from its start (Gradio's LinePlot kept the
    # series of its first frame: only a reloaded page drew it)
    page.wait_for_function("() => /held-out loss/.test(document.querySelector('#build-log textarea').value)",
                           timeout=300_000)
    page.wait_for_function("() => { const s = document.querySelector('#build-loss svg');"
                           " return s && s.textContent.includes('held-out'); }")
    page.wait_for_timeout(2500)
    page.screenshot(path=str(SHOTS / "build.png"), full_page=True)
    page.click("#build-cancel")
    page.wait_for_function("() => /cancelled/.test(document.querySelector('#build-status').innerText)",
                           timeout=30_000)
    page.wait_for_function("(j) => document.querySelector('#build-runs').innerText.includes(j)", arg=job)
    # a refreshed page re-attaches to the latest job
    page.reload()
    page.get_by_role("tab", name="Build").click()
    page.wait_for_function(
        "(j) => (document.querySelector('#build-job-id input, #build-job-id textarea').value === j)"
        " && /cancelled/.test(document.querySelector('#build-status').innerText)", arg=job)


def test_bad_numbers_and_refused_uploads_get_a_message_in_the_status_line(page, server, tmp_path):
    """Newcomer walk (2026-12-07): a learning rate out of range was refused by Gradio before any handler ran (a
    toast naming no field, error badges on other outputs, a traceback per event in the server log), and a refused
    upload left the form's training file (the demo set) for Start to build on without a word."""
    page.get_by_role("tab", name="Build").click()
    page.wait_for_selector("#build-start", state="visible")
    runs = set(os.listdir(server["ws"] / "runs")) if (server["ws"] / "runs").exists() else set()
    lr = page.locator("#build-lora-learning-rate input")
    before = lr.input_value()
    lr.fill("1000000")
    lr.press("Tab")
    page.click("#build-start")
    page.wait_for_function("() => /cannot start: lora.learning_rate = 1000000(.0)? is above the maximum 0.1/"
                           ".test(document.querySelector('#build-status').innerText)")
    lr.fill(before)
    lr.press("Tab")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    page.locator("#build-upload input[type=file]").set_input_files(str(empty))
    page.wait_for_function("() => /training file is now empty/.test(document.querySelector('#build-data-preview')"
                           ".innerText)")
    assert page.locator("#build-train-file input, #build-train-file textarea").first.input_value() == ""
    page.click("#build-start")
    page.wait_for_function("() => /cannot start: train_file is empty/"
                           ".test(document.querySelector('#build-status').innerText)")
    after = set(os.listdir(server["ws"] / "runs")) if (server["ws"] / "runs").exists() else set()
    assert after == runs, "no job was started"
    assert "gradio.exceptions.Error" not in server["log"].read_text()


def test_library(page):
    page.get_by_role("tab", name="Library").click()
    page.wait_for_selector("#lib-adapters", state="visible")
    for a in ADAPTERS:
        page.wait_for_function("(a) => document.querySelector('#lib-adapters').innerText.includes(a)", arg=a)
    assert re.search(re.escape(base_tests.BASE), page.inner_text("#lib-bases"))
    page.screenshot(path=str(SHOTS / "library.png"), full_page=True)
