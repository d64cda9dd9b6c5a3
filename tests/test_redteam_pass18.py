"""Eighteenth red-team pass (2026-12-07, a helper as a signed-in stranger on the share link, over HTTP), each
finding tested where the code decides it:

1. 20 connections that declared 8 MB uploads and sent no body took the hourly upload budget for as long as they
   stayed open: the budget counts what arrives, as it arrives, and a body slower than 32 kB/s (after 30 s) gets
   408 (tests/test_guard.py: test_idle_uploads_hold_no_budget_and_are_cut_off);
2. start-and-cancel requests (0.3 s each) filled runs/ to STUDIO_MAX_RUNS and refused every later build for good:
   the oldest ended runs make room, those that hold nothing first (tests/test_redteam_pass12.py:
   test_runs_are_capped_for_the_page_and_the_page_shows_the_newest);
3. a lone surrogate among a data file's keys made the data check's message unsendable (stream cut, traceback
   logged): error messages replace them (tests/test_security.py: test_a_lone_surrogate_among_a_files_keys...);
4. Gradio's custom_component route printed its raw path into the log without login, and 6. /monitoring told
   any signed-in client what all sessions did: both route families, and the others this app does not use, are
   404 (tests/test_security.py: test_routes_this_app_does_not_use_are_not_served);
5. every base a chat touched kept its engine (its model) in memory for good, and anyone may publish bases: at
   most STUDIO_MAX_LOADED_BASES (2) stay loaded, the least recently used idle one is closed (below)."""
from __future__ import annotations

import shutil
import threading

import gradio as gr
import pytest

from app_helpers import BASE, make_workspace


@pytest.fixture
def three_bases(tmp_path):
    from artifacts import Workspace
    from ui.chat_engine import ChatEngineSide
    ws = make_workspace(tmp_path / "ws")
    models = ws / "models"
    for name in ("b1", "b2"):  # the same ONNX base under other names
        shutil.copytree(models / BASE, models / name)
    return ChatEngineSide(Workspace(ws), provider="cpu")


def test_at_most_two_bases_stay_loaded_and_a_held_one_is_not_closed(three_bases, monkeypatch):
    import engine.chat as ec
    closed = []
    real_close = ec.ChatEngine.close
    monkeypatch.setattr(ec.ChatEngine, "close", lambda self: (closed.append(self), real_close(self)))
    app = three_bases
    e1, e2 = app.chat(BASE), app.chat("b1")
    assert app.loaded_bases() == [BASE, "b1"] and closed == []
    e3 = app.chat("b2")  # a third: the least recently used (BASE) is closed
    assert app.loaded_bases() == ["b1", "b2"] and closed == [e1]
    assert app.chat("b1") is e2 and app.loaded_bases() == ["b2", "b1"]  # used: now the most recent
    # a request holds b2 while two others are loaded: b2 stays, the idle one goes
    held = app.chat("b2", hold=True)
    assert held is e3
    e1b = app.chat(BASE)
    assert e1b is not e1 and closed == [e1, e2] and app.loaded_bases() == ["b2", BASE]
    e2b = app.chat("b1")  # over the cap with b2 held: BASE (idle) goes, b2 stays
    assert closed == [e1, e2, e1b] and app.loaded_bases() == ["b2", "b1"]
    app.release(held)
    assert app.loaded_bases() == ["b2", "b1"]
    # the engine a request holds answers to its end even while other bases load
    from ui.chat_tab import ChatService
    monkeypatch.setattr(gr, "Warning", lambda *a, **k: None)
    svc = ChatService(app)
    frames = svc.respond("Where should I go in May?", [], [], "b2", "travel", "base", False, 0.0, 1.0, 0, 24,
                         1.0, 0)
    next(frames)
    for name in (BASE, "b1", BASE):
        app.chat(name)
    assert e3 not in closed and app._held.get(e3) == 1
    last = list(frames)[-1]
    assert last[0][-1]["role"] == "assistant" and last[0][-1]["content"] and "⚠" not in last[3], last[3]
    assert app._held.get(e3) is None
    app.chat("b1")
    assert e3 in closed  # idle now: closed once over the cap
    assert e2b.backend is not None


def test_the_cap_is_the_operators(monkeypatch):
    from artifacts.limits import max_loaded_bases
    assert max_loaded_bases({}) == 2
    assert max_loaded_bases({"STUDIO_MAX_LOADED_BASES": "5"}) == 5
    assert max_loaded_bases({"STUDIO_MAX_LOADED_BASES": "0"}) == 1  # one at least
    assert max_loaded_bases({"STUDIO_MAX_LOADED_BASES": "many"}) == 2


def test_loads_of_many_bases_at_once_keep_the_cap(three_bases):
    app = three_bases
    errors = []

    def use(name):
        try:
            for _ in range(5):
                e = app.chat(name, hold=True)
                try:
                    assert e.variants()
                finally:
                    app.release(e)
        except Exception as ex:  # pragma: no cover - reported below
            errors.append(repr(ex))
    ts = [threading.Thread(target=use, args=(n,)) for n in (BASE, "b1", "b2") * 2]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert errors == [] and len(app.loaded_bases()) <= 2 and app._held == {}
