"""Assembles the tabs into one gr.Blocks; each tab lives in its own module and returns its components."""
from __future__ import annotations

import gradio as gr

from ui.build_tab import create_build_tab
from ui.chat_tab import create_chat_tab
from ui.engine import AppEngine
from ui.library_tab import create_library_tab

TITLE = "LoRA studio: fine-tune -> int4 ONNX -> hot-swappable adapters"
CSS = """
#chat-stats, #build-status {min-height: 1.6em}
#build-log textarea {font-family: ui-monospace, monospace; font-size: 12px}
"""


def create_ui(app: AppEngine) -> gr.Blocks:
    with gr.Blocks(title="LoRA studio") as demo:
        gr.Markdown(f"## {TITLE}\nworkspace `{app.ws.root}` · models `{app.models_dir}` · "
                    f"adapters `{app.adapters_dir}`", elem_id="header")
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Chat", id="chat", elem_id="tab-chat"):
                chat = create_chat_tab(app)
            with gr.Tab("Build", id="build", elem_id="tab-build"):
                build = create_build_tab(app)
            with gr.Tab("Library", id="library", elem_id="tab-library") as lib_tab:
                library = create_library_tab(app)
        # page load: pickers, the running (or latest) job, the library tables
        demo.load(chat.pickers_fn, [chat.base, chat.variant, chat.variant_b],
                  [chat.base, chat.variant, chat.variant_b, chat.refused], api_visibility="private",
                  concurrency_id="ui")
        fn, inputs, outputs = build.on_load
        demo.load(fn, inputs, outputs, api_visibility="private", queue=False)
        fn, inputs, outputs = library.on_load
        lib_tab.select(fn, inputs, outputs, api_visibility="private", concurrency_id="ui")
    demo.ui_tabs = {"chat": chat, "build": build, "library": library}
    return demo


def launch_kwargs() -> dict:
    return {"css": CSS, "theme": gr.themes.Soft()}
