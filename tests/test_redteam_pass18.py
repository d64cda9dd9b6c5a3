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
   most STUDIO_MAX_LOADED_BASES (2) stay loaded, the least recently used idle one is closed (below); pass 19: not
   the default base, so that cycling through other bases does not make its users wait for reloads.

Pass 19 re-attacked these: a logout ended every session of the shared user (tests/test_security.py:
test_a_logout_ends_only_the_callers_session); one client took the whole hourly upload budget (each client now
has a share: tests/test_guard.py); runs that had only finished `prepare` counted as work, so start, prepare,
cancel erased other users' resumable runs (runs with work are now never removed: test_redteam_pass12.py)."""
from __future__ import annotations

import shutil
import threading

import gradio as gr
import pytest

from app_helpers import BASE, make_workspace


@pytest.fixture
def bases(tmp_path):
    """A chat side over four bases: the default and b1..b3 (copies of it)."""
    from artifacts import Workspace
    from ui.chat_engine import ChatEngineSide
    ws = make_workspace(tmp_path / "ws")
    for name in ("b1", "b2", "b3"):
        shutil.copytree(ws / "models" / BASE, ws / "models" / name)
    return ChatEngineSide(Workspace(ws), provider="cpu")


def test_at_most_two_bases_stay_loaded_and_a_held_one_is_not_closed(bases, monkeypatch):
    """Two engines at most (STUDIO_MAX_LOADED_BASES): the least recently used idle one is closed, never one a
    request holds, and never the default base (pass 19: cycling through other bases made its users wait for
    reloads)."""
    import engine.chat as ec
    closed = []
    real_close = ec.ChatEngine.close
    monkeypatch.setattr(ec.ChatEngine, "close", lambda self: (closed.append(self), real_close(self)))
    app = bases
    assert app.default_base() == BASE
    ed, e1 = app.chat(BASE), app.chat("b1")
    assert app.loaded_bases() == [BASE, "b1"] and closed == []
    e2 = app.chat("b2")  # a third: the least recently used that is not the default (b1) is closed
    assert app.loaded_bases() == [BASE, "b2"] and closed == [e1]
    e1b = app.chat("b1")
    assert e1b is not e1 and closed == [e1, e2] and app.loaded_bases() == [BASE, "b1"]
    held = app.chat("b1", hold=True)  # a request holds b1: a load of b2 goes over the cap for the while
    assert held is e1b
    e2b = app.chat("b2")
    assert app.loaded_bases() == [BASE, "b1", "b2"] and closed == [e1, e2]
    app.release(held)  # then the idle least recently used goes
    assert app.loaded_bases() == [BASE, "b2"] and closed == [e1, e2, e1b]
    assert app.chat(BASE) is ed and ed not in closed  # the default stayed loaded throughout
    # the engine a request holds answers to its end while others cycle through the bases
    from ui.chat_tab import ChatService
    monkeypatch.setattr(gr, "Warning", lambda *a, **k: None)
    svc = ChatService(app)
    frames = svc.respond("Where should I go in May?", [], [], "b2", "travel", "base", False, 0.0, 1.0, 0, 24,
                         1.0, 0)
    next(frames)
    for name in ("b1", "b3", "b1", BASE):
        app.chat(name)
    assert e2b not in closed and app._held.get(e2b) == 1 and ed not in closed
    last = list(frames)[-1]
    assert last[0][-1]["role"] == "assistant" and last[0][-1]["content"] and "⚠" not in last[3], last[3]
    assert app._held.get(e2b) is None and app.loaded_bases() == ["b2", BASE]
    app.chat("b3")
    assert e2b in closed and app.loaded_bases() == [BASE, "b3"]  # idle now: closed once over the cap


def test_the_cap_is_the_operators(monkeypatch):
    from artifacts.limits import max_loaded_bases
    assert max_loaded_bases({}) == 2
    assert max_loaded_bases({"STUDIO_MAX_LOADED_BASES": "5"}) == 5
    assert max_loaded_bases({"STUDIO_MAX_LOADED_BASES": "0"}) == 1  # one at least
    assert max_loaded_bases({"STUDIO_MAX_LOADED_BASES": "many"}) == 2


def test_loads_of_many_bases_at_once_keep_the_cap(bases):
    app = bases
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
    ts = [threading.Thread(target=use, args=(n,)) for n in (BASE, "b1", "b2", "b3") * 2]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert errors == [] and len(app.loaded_bases()) <= 2 and app._held == {}
