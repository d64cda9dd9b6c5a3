"""Assembles the tabs into one gr.Blocks; each tab lives in its own module and returns its components.

create_ui: Chat, Build, Library, Deploy (the studio). create_chat_only_ui: Chat and a read-only Library,
for `app.py --chat-only` and exported Spaces; it imports neither the Build tab nor the pipeline (the
Build and Deploy tabs are imported inside create_ui only). Both return a queued demo holding its engine
as demo.app_engine."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import gradio as gr

from ui import hardening
from ui.chat_tab import create_chat_tab
from ui.library_tab import create_library_tab

TITLE = "LoRA studio: fine-tune -> int4 ONNX -> hot-swappable adapters"
CHAT_TITLE = "LoRA studio chat: int4 ONNX with hot-swappable LoRA adapters"
UPLOAD_CACHE = (600, 3600)  # Gradio's upload cache: every 10 min, files older than 1 h are deleted
CSS = """
#chat-stats, #build-status {min-height: 1.6em}
#build-log textarea {font-family: ui-monospace, monospace; font-size: 12px}
#share-warning {border: 2px solid #d97706; border-radius: 6px; padding: 4px 10px; background: #fef3c7}
#lib-bases th, #lib-bases th *, #lib-adapters th, #lib-adapters th *, #build-runs th, #build-runs th * {
  word-break: normal !important; overflow-wrap: normal !important; white-space: nowrap}
"""


def _banner(demo: gr.Blocks, warning: str | None) -> None:
    """A visible warning line at the top of the page, also raised as a toast when the page opens."""
    if not warning:
        return
    gr.Markdown(f"⚠ **{warning}**", elem_id="share-warning")

    def toast():
        gr.Warning(warning, duration=None)

    demo.load(toast, None, None, api_visibility="private", queue=False)


def _chat_and_library_loads(demo, chat_tab, chat, lib_tab, library) -> None:
    pickers = (chat.pickers_fn, [chat.base, chat.variant, chat.variant_b],
               [chat.base, chat.variant, chat.variant_b, chat.refused])
    demo.load(*pickers, api_visibility="private", concurrency_id="ui")
    # and whenever the Chat tab is opened: an adapter just built (or deleted) shows without ↻ Refresh
    chat_tab.select(*pickers, api_visibility="private", concurrency_id="ui")
    fn, inputs, outputs = library.on_load
    lib_tab.select(fn, inputs, outputs, api_visibility="private", concurrency_id="ui").then(
        *library.eval_reload, api_visibility="private", concurrency_id="ui")


def _finish(demo: gr.Blocks, app, tabs: dict) -> gr.Blocks:
    hardening.install()  # Gradio's own behaviours that strangers must not reach (ui/hardening.py)
    # api_open=False: a queued handler (chat, builds) is reached only through the queue, never by a direct POST
    # to /gradio_api/run/<name>, which ran it outside the concurrency limits (24 chats at once against a
    # limit of 8, red team pass 13); Gradio does this on Spaces by itself. gradio_client uses the queue.
    demo.queue(default_concurrency_limit=4, max_size=64, api_open=False)
    # the sessions whose undelivered messages Gradio keeps: as many as the session states it keeps (2,000 by default;
    # each holds up to hardening.MAX_UNREAD messages), dropping idle ones first (hardening.LiveSessions)
    hardening.bound_sessions(demo._queue, int(os.environ.get("STUDIO_SESSION_CAPACITY", "256")))
    demo.app_engine = app
    demo.ui_tabs = tabs
    return demo


def folders_line(app) -> str:
    """The header's folders. The page is served to whoever has the link, so it names no server path: folders
    relative to the workspace, or only their name when outside it (the operator's terminal gets full paths)."""
    def shown(path) -> str:
        return app.ws.relative(path) or f"{Path(path).name} (outside the workspace)"
    return (f"workspace `{Path(app.ws.root).resolve().name}` · models `{shown(app.models_dir)}` · "
            f"adapters `{shown(app.adapters_dir)}`")


def create_ui(app, warning: str | None = None) -> gr.Blocks:
    from ui.build_tab import create_build_tab
    from ui.deploy_tab import create_deploy_tab
    print(f"LoRA studio: workspace {Path(app.ws.root).resolve()}, models {Path(app.models_dir).resolve()}, "
          f"adapters {Path(app.adapters_dir).resolve()}", file=sys.stderr, flush=True)
    with gr.Blocks(title="LoRA studio", delete_cache=UPLOAD_CACHE) as demo:
        gr.Markdown(f"## {TITLE}\n{folders_line(app)}", elem_id="header")
        _banner(demo, warning)
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Chat", id="chat", elem_id="tab-chat") as chat_tab:
                chat = create_chat_tab(app)
            with gr.Tab("Build", id="build", elem_id="tab-build"):
                build = create_build_tab(app)
            with gr.Tab("Library", id="library", elem_id="tab-library") as lib_tab:
                library = create_library_tab(app)
            with gr.Tab("Deploy", id="deploy", elem_id="tab-deploy") as deploy_tab:
                deploy = create_deploy_tab(app)
        # page load: pickers, the running (or latest) job, the library tables
        _chat_and_library_loads(demo, chat_tab, chat, lib_tab, library)
        event = demo
        for i, (fn, inputs, outputs, js, api_name) in enumerate(build.on_load):  # one chain, in order
            kw = {"api_name": api_name} if api_name else {"api_visibility": "private"}
            event = (event.load if i == 0 else event.then)(fn, inputs, outputs, js=js, queue=False, **kw)
        demo.load(None, None, None, js=build.follow_log_js, api_visibility="private", queue=False)
        fn, inputs, outputs = deploy.on_load
        deploy_tab.select(fn, inputs, outputs, api_visibility="private", concurrency_id="ui")
    return _finish(demo, app, {"chat": chat, "build": build, "library": library, "deploy": deploy})


def create_chat_only_ui(app, warning: str | None = None) -> gr.Blocks:
    """Chat + read-only Library: no build jobs, no deletion, no pipeline imports."""
    with gr.Blocks(title="LoRA studio chat", delete_cache=UPLOAD_CACHE) as demo:
        gr.Markdown(f"## {CHAT_TITLE}", elem_id="header")
        _banner(demo, warning)
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Chat", id="chat", elem_id="tab-chat") as chat_tab:
                chat = create_chat_tab(app)
            with gr.Tab("Library", id="library", elem_id="tab-library") as lib_tab:
                library = create_library_tab(app, read_only=True)
        _chat_and_library_loads(demo, chat_tab, chat, lib_tab, library)
    return _finish(demo, app, {"chat": chat, "library": library})


def serve(demo, host: str, port: int, opts, gradio_dir: str | None) -> None:
    """Launches a launcher's demo (app.py, the exported Space's app.py): sweeps Gradio's private folder
    (ui/hardening.py; Gradio's own cleanup leaves what it did not register), then serves with the share/auth
    options `opts` (deploy.launch.launch_options), the request guard and this app's Gradio settings."""
    from artifacts import max_upload_bytes, upload_budget_bytes
    from deploy.launch import guard_kwargs, quiet_uvicorn
    from ui.hardening import sweep_in_background
    if gradio_dir:
        sweep_in_background(gradio_dir)
    quiet_uvicorn()
    demo.launch(server_name=host, server_port=port, show_error=False, **opts.launch_kwargs(),
                **guard_kwargs(max_upload_bytes(), upload_budget_bytes()), **launch_kwargs())


def launch_kwargs() -> dict:
    """run_history=False: Gradio's run-history routes (/gradio_api/run-history/*) sit outside the app's
    login and, for a client on loopback, call the Hub with the server's own token (list or create buckets,
    read their records); the browser-side history would also keep what was typed (a Hub token)."""
    # every new session id costs Gradio a session state (~330 kB and the inputs it carried) kept until pushed
    # out, 10,000 by default: GBs from one client. This app keeps nothing there that it needs (a chat's history
    # comes with each request), so a few hundred are enough.
    # enable_monitoring=False: Gradio's /monitoring summary told any signed-in client every endpoint's use by all
    # sessions (that someone pushed or deleted), and /monitoring printed its dashboard key (red-team pass 18)
    return {"css": CSS, "theme": gr.themes.Soft(), "run_history": False, "enable_monitoring": False,
            "state_session_capacity": int(os.environ.get("STUDIO_SESSION_CAPACITY", "256"))}
