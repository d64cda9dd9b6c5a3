"""What a newcomer's walk through the app found (2026-12-07, a helper following the README in a browser), each
where the code decides it; tests/test_browser.py and tests/test_browser_newcomer.py replay the page-level ones
(a bad number or a refused upload at Start, the Chat tab's lists refreshed on opening it)."""
from __future__ import annotations

import pytest


def test_numbers_carry_their_range_in_the_label_and_leave_the_check_to_the_recipe():
    """Gradio's own minimum/maximum refused a value before any handler ran: a toast naming no field, error
    badges on other outputs, a traceback in the server log. The recipe's bounds name the field."""
    import gradio as gr
    from pipeline.recipe import Recipe, RecipeError
    from ui.build_form import make_component
    from dataclasses import fields
    from pipeline.recipe import LoRAConfig
    meta = {f.name: f.metadata for f in fields(LoRAConfig)}["learning_rate"]
    with gr.Blocks():
        c = make_component("lora.learning_rate", 2e-4, meta)
    assert isinstance(c, gr.Number) and c.minimum is None and c.maximum is None
    assert "1e-07 to 0.1" in c.info
    with pytest.raises(RecipeError, match=r"lora.learning_rate = 1.0 is above the maximum 0.1"):
        Recipe.from_dict({"lora": {"learning_rate": 1.0}}).validate()


def test_an_adapter_worse_than_the_base_is_said_so():
    """A learning rate of 1.0 published an adapter that answers blank lines, with the status 'ok' and an
    evaluation table 8,651 px tall."""
    from pipeline.events import JobState
    from ui.build_view import status_text
    from ui.library_tab import eval_html
    ev = {"n": 20, "source": "held-out", "base_loss": 3.918, "adapter_loss": 6.174, "base_ppl": 50.28,
          "adapter_ppl": 480.02, "samples": [{"prompt": "p", "reference": "r", "base": "b", "adapter": "\n" * 128}]}
    html = eval_html(ev)
    assert "eval-worse" in html and "+2.256" in html and "learning rate" in html
    assert "(blank answer)" in html and "<br><br>" not in html
    st = JobState()
    st.status, st.result, st.eval = "ok", {"adapter": "lr-one", "base": "default", "eval": ev}, ev
    assert "⚠ held-out loss +2.256" in status_text("j", st)
    good = dict(ev, adapter_loss=0.5)
    st.eval = st.result["eval"] = good
    assert "⚠" not in status_text("j", st) and "eval-worse" not in eval_html(good)


def test_held_out_wording_says_when_the_minimum_raised_it():
    from pipeline.data import heldout_note
    assert heldout_note(40, "", 0, 0.1, 0) == ("held-out: 20 of 40 examples carved from the train file "
                                               "(10 % asked, raised to the minimum of 20, seed 0)")
    assert heldout_note(600, "", 0, 0.1, 0).endswith("(10 %, seed 0)")


def test_messages_give_the_page_s_advice(tmp_path):
    import json
    from pipeline.stage_publish import exists_message
    (tmp_path / "travel").mkdir()
    (tmp_path / "travel" / "metadata.json").write_text(json.dumps({"protected": True}))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "metadata.json").write_text("{}")
    assert "protected" in exists_message("travel", tmp_path) and "tick" not in exists_message("travel", tmp_path)
    assert "tick 'Replace existing adapter'" in exists_message("mine", tmp_path)


def test_export_over_an_existing_one_names_the_page_s_checkbox(tmp_path):
    from deploy.space import ExportError, export_space
    out = tmp_path / "e"
    out.mkdir()
    (out / "x").write_text("x")
    with pytest.raises(ExportError, match="Replace a previous export of that name"):
        export_space(out, "default", [])


def test_the_delete_list_offers_no_protected_adapter(tmp_path):
    from app_helpers import make_workspace
    from artifacts import Workspace
    from ui.engine import AppEngine
    from ui.library_tab import _deletable
    app = AppEngine(Workspace(make_workspace(tmp_path / "ws")))
    names = {a.name for a in app.adapters(None)}
    assert {"travel", "pirate"} <= names
    assert not {"travel", "pirate"} & set(_deletable(app))


def test_the_stats_line_explains_itself():
    from ui.chat_tab import format_stats
    line = format_stats({"variant": "travel", "provider": "cpu", "backend": "og", "tokens": 12, "finished": True,
                         "finish_reason": "eos"})
    assert "backend og (onnxruntime-genai)" in line and "done (eos: the answer ended)" in line
    assert "done (length: max new tokens reached)" in format_stats({"finished": True, "finish_reason": "length"})
