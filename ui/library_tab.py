"""Library tab: the ONNX bases in models/ and the adapters in adapters/ with their metadata; delete an
adapter (with a confirmation tick) through artifacts.delete_adapter. read_only=True (chat-only app,
exported Spaces; the default when the engine is read-only) shows the tables without the delete section."""
from __future__ import annotations

from dataclasses import dataclass
import time

import gradio as gr
import pandas as pd

from artifacts import LibraryError
from ui.chat_engine import ChatEngineSide, UIError

BASE_COLS = ["base", "precision", "provider", "source model", "fingerprint", "size MB", "created", "status"]
ADAPTER_COLS = ["adapter", "base", "fits", "dataset", "examples", "steps", "train loss", "held-out loss",
                "rank", "size KB", "created", "note"]


def _dir_size(p) -> int:
    try:
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    except OSError:
        return 0


def _num(v, fmt="{:.4f}"):
    return fmt.format(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else ("" if v is None else str(v))


def _date(v) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(v))
    return str(v or "")[:19].replace("T", " ")


def bases_frame(app: ChatEngineSide) -> pd.DataFrame:
    rows = []
    for b in app.bases():
        m = b.meta or {}
        rows.append([b.dir.name, m.get("precision", ""), m.get("execution_provider", ""),
                     m.get("source_model", ""), str(m.get("fingerprint", ""))[:12],
                     round(_dir_size(b.dir) / 1e6, 1), _date(m.get("created")),
                     "ok" if b.ok else b.reason])
    return pd.DataFrame(rows, columns=BASE_COLS)


def adapters_frame(app: ChatEngineSide) -> pd.DataFrame:
    bases = {b.fingerprint: b.dir.name for b in app.bases() if b.fingerprint}
    rows = []
    for a in app.adapters(None):
        m = a.metadata or {}
        ds = m.get("dataset") or {}
        fits = bases.get(m.get("base_fingerprint"))
        note = a.reason if a.reason and "no base.json" not in a.reason else ""
        if fits is None and not note:
            note = "no matching base in models/"
        rows.append([a.name, m.get("base_name", ""), fits or "—",
                     str(ds.get("train_file", ""))[-60:] if isinstance(ds, dict) else str(ds),
                     ds.get("examples", "") if isinstance(ds, dict) else "",
                     m.get("steps", ""), _num(m.get("train_loss")), _num(m.get("eval_loss")),
                     m.get("rank", ""), round((a.size or m.get("size_bytes") or 0) / 1e3, 1),
                     _date(m.get("created")), note])
    return pd.DataFrame(rows, columns=ADAPTER_COLS)


@dataclass
class LibraryTab:
    bases: gr.Dataframe
    adapters: gr.Dataframe
    to_delete: gr.Dropdown | None
    confirm: gr.Checkbox | None
    delete: gr.Button | None
    refresh: gr.Button
    message: gr.Markdown
    on_load: object = None


def create_library_tab(app: ChatEngineSide, read_only: bool | None = None) -> LibraryTab:
    """read_only=None: as the engine says (app.read_only)."""
    if read_only is None:
        read_only = bool(getattr(app, "read_only", False))
    refresh = gr.Button("↻ Refresh", elem_id="lib-refresh", size="sm")
    gr.Markdown("### ONNX base models")
    bases = gr.Dataframe(bases_frame(app), interactive=False, elem_id="lib-bases", wrap=True)
    gr.Markdown("### Adapters")
    adapters = gr.Dataframe(adapters_frame(app), interactive=False, elem_id="lib-adapters", wrap=True)
    if read_only:
        message = gr.Markdown("", elem_id="lib-message")

        def reload_tables():
            return bases_frame(app), adapters_frame(app)

        refresh.click(reload_tables, None, [bases, adapters], api_name="library", concurrency_id="ui")
        tab = LibraryTab(bases, adapters, None, None, None, refresh, message)
        tab.on_load = (reload_tables, None, [bases, adapters])
        return tab
    with gr.Accordion("Delete an adapter", open=False, elem_id="lib-delete-group"):
        with gr.Row():
            to_delete = gr.Dropdown(choices=[a.name for a in app.adapters(None)], value=None,
                                    label="Adapter", elem_id="lib-delete-name", interactive=True,
                                    allow_custom_value=True)
            confirm = gr.Checkbox(False, label="Yes, delete it (cannot be undone)", elem_id="lib-delete-confirm")
            delete = gr.Button("Delete", variant="stop", elem_id="lib-delete")
    message = gr.Markdown("", elem_id="lib-message")

    def reload():
        adapters_df = adapters_frame(app)
        return bases_frame(app), adapters_df, gr.update(choices=list(adapters_df["adapter"]), value=None), False

    def do_delete(name, ok):
        if not name:
            gr.Warning("choose an adapter to delete")
            return (*reload(), "⚠ no adapter chosen")
        if not ok:
            gr.Warning("tick the confirmation box to delete")
            return (gr.update(), gr.update(), gr.update(), False, f"⚠ tick the confirmation to delete `{name}`")
        try:
            app.delete_adapter(name)
        except (LibraryError, UIError, OSError) as e:
            gr.Warning(str(e))
            return (*reload(), f"⚠ {e}")
        return (*reload(), f"deleted `{name}`")

    outs = [bases, adapters, to_delete, confirm]
    refresh.click(reload, None, outs, api_name="library", concurrency_id="ui")
    delete.click(do_delete, [to_delete, confirm], outs + [message], api_name="delete_adapter",
                 concurrency_id="ui")
    tab = LibraryTab(bases, adapters, to_delete, confirm, delete, refresh, message)
    tab.on_load = (reload, None, outs)
    return tab
