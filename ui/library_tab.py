"""Library tab: the ONNX bases in models/ and the adapters in adapters/ with their metadata; delete an
adapter (with a confirmation tick) through artifacts.delete_adapter. read_only=True (chat-only app,
exported Spaces; the default when the engine is read-only) shows the tables without the delete section.
Below the tables, one adapter's evaluation (eval_html, also shown at the end of the Build view): base vs
adapter on held-out data, measured on the served model at the end of its build, with sample answers."""
from __future__ import annotations

from dataclasses import dataclass
import html
import re
import time

import gradio as gr
import pandas as pd

from artifacts import LibraryError, may_read_adapter
from ui.chat_engine import ChatEngineSide, UIError
from ui.slots import PAGE, requester

BASE_COLS = ["base", "precision", "provider", "source model", "fingerprint", "size MB", "created", "status"]
ADAPTER_COLS = ["adapter", "base", "fits", "dataset", "examples", "steps", "train loss", "held-out loss",
                "served loss base → adapter", "rank", "size KB", "created", "note"]


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


NO_EVAL = "<p class='eval-none'>No evaluation recorded for this adapter (built before evaluations were stored).</p>"


def _cell(v) -> str:
    return html.escape(str(v if v is not None else "")).replace("\n", "<br>")


def _answer(v) -> str:
    """A sample answer as a cell: blank lines collapsed, an empty answer said so (an over-trained adapter can
    answer 128 newlines, which made the table thousands of pixels tall)."""
    text = re.sub(r"\n\s*\n+", "\n\n", str(v if v is not None else "")).strip()
    return _cell(text) if text else "<i>(blank answer)</i>"


def _deletable(app) -> list[str]:
    """The adapters the page may delete: not the protected ones (the shipped travel and pirate), which the
    policy refuses anyway."""
    return [a.name for a in app.adapters(None) if (a.metadata or {}).get("protected") is not True]


def worse_than_base(ev) -> float | None:
    """How much higher the adapter's held-out loss is than the base's, when it is (else None)."""
    if not isinstance(ev, dict):
        return None
    bl, al = ev.get("base_loss"), ev.get("adapter_loss")
    if isinstance(bl, (int, float)) and isinstance(al, (int, float)) and al > bl:
        return al - bl
    return None


WORSE_ADVICE = ("the adapter does worse than the base on the held-out examples: it was probably trained too hard "
                "(lower the learning rate or the steps, and build again) or on data unlike the held-out part")


def eval_html(ev: dict | None, title: str = "") -> str:
    """The eval dict of the contract ({n, source, base_loss, adapter_loss, base_ppl, adapter_ppl, samples})."""
    if not isinstance(ev, dict) or not ev:
        return NO_EVAL
    head = f"<h4>{_cell(title)}</h4>" if title else ""
    src = (f"<p>Held-out: <b>{_cell(ev.get('n', '?'))}</b> examples ({_cell(ev.get('source', ''))}), measured on "
           "the served int4 ONNX model (greedy answers).</p>")
    bl, al = ev.get("base_loss"), ev.get("adapter_loss")
    delta = ""
    if isinstance(bl, (int, float)) and isinstance(al, (int, float)):
        delta = f"<td>{al - bl:+.3f}</td>"
    metrics = ("<table class='eval-metrics'><thead><tr><th></th><th>base</th><th>adapter</th><th>change</th>"
               "</tr></thead><tbody>"
               f"<tr><td>held-out loss</td><td data-k='base_loss'>{_num(bl, '{:.3f}') or '—'}</td>"
               f"<td data-k='adapter_loss'>{_num(al, '{:.3f}') or '—'}</td>{delta or '<td></td>'}</tr>"
               f"<tr><td>perplexity</td><td>{_num(ev.get('base_ppl'), '{:.2f}') or '—'}</td>"
               f"<td>{_num(ev.get('adapter_ppl'), '{:.2f}') or '—'}</td><td></td></tr></tbody></table>")
    worse = worse_than_base(ev)
    if worse is not None:
        metrics = f"<p class='eval-worse'><b>⚠ Held-out loss {worse:+.3f}</b>: {WORSE_ADVICE}.</p>" + metrics
    rows = "".join(
        f"<tr class='eval-sample'><td>{_cell(s.get('prompt'))}</td><td>{_cell(s.get('reference'))}</td>"
        f"<td>{_answer(s.get('base'))}</td><td>{_answer(s.get('adapter'))}</td></tr>"
        for s in ev.get("samples") or [] if isinstance(s, dict))
    samples = ("<table class='eval-samples'><thead><tr><th>prompt</th><th>reference</th><th>base</th>"
               f"<th>adapter</th></tr></thead><tbody>{rows}</tbody></table>") if rows else ""
    return f"<div class='eval-view'>{head}{src}{metrics}{samples}</div>"


def bases_frame(app: ChatEngineSide) -> pd.DataFrame:
    rows = []
    for b in app.bases():
        m = b.meta or {}
        rows.append([b.dir.name, m.get("precision", ""), m.get("execution_provider", ""),
                     m.get("source_model", ""), str(m.get("fingerprint", ""))[:12],
                     round(_dir_size(b.dir) / 1e6, 1), _date(m.get("created")),
                     "ok" if b.ok else b.reason])
    return pd.DataFrame(rows, columns=BASE_COLS)


def adapters_frame(app: ChatEngineSide, client: str | None) -> pd.DataFrame:
    """The adapters table as `client` (ui.slots.requester; None: the operator) may see it: the dataset of another
    user's adapter is not named (its file name is theirs: red-team pass 31), the rest is everyone's."""
    bases = {b.fingerprint: b.dir.name for b in app.bases() if b.fingerprint}
    rows = []
    for a in app.adapters(None):
        m = a.metadata or {}
        ds = m.get("dataset") or {}
        fits = bases.get(m.get("base_fingerprint"))
        note = a.reason if a.reason and "no base.json" not in a.reason else ""
        if fits is None and not note:
            note = "no matching base in models/"
        ev = m.get("eval") if isinstance(m.get("eval"), dict) else {}
        served = (f"{_num(ev.get('base_loss'), '{:.3f}')} → {_num(ev.get('adapter_loss'), '{:.3f}')}"
                  if ev else "")
        if not isinstance(ds, dict):
            ds = {"train_file": str(ds)}
        dataset = (str(ds.get("train_file", ""))[-60:] if may_read_adapter(app.ws, m, client)
                   else "(another user's)")
        rows.append([a.name, m.get("base_name", ""), fits or "—", dataset, ds.get("examples", ""),
                     m.get("steps", ""), _num(m.get("train_loss")), _num(m.get("eval_loss")), served,
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
    evaluation: gr.HTML | None = None
    on_load: object = None
    eval_reload: object = None


def adapter_eval(app: ChatEngineSide, name: str | None, client: str | None = None) -> str:
    """The evaluation of adapter `name` as HTML (an unknown name is a message, not an error). Its held-out
    prompts and reference answers come from its user's data: a web client (`client`, ui.slots.requester) sees
    them for the adapters it built and the protected (shipped) ones; the operator (None) for all."""
    if not name:
        return ""
    info = next((a for a in app.adapters(None) if a.name == name), None)
    if info is None:
        return f"<p>⚠ no adapter {html.escape(repr(name))}</p>"
    meta = info.metadata or {}
    if not may_read_adapter(app.ws, meta, client):
        return (f"<p>{html.escape(name)}: another user's adapter. Its evaluation shows examples of their data, "
                "so only they see it; everyone can chat with it.</p>")
    return eval_html(meta.get("eval"), f"{name}: base vs adapter")


def _eval_section(app: ChatEngineSide):
    """An adapter picker and its evaluation, and the (fn, inputs, outputs) that refreshes them."""
    gr.Markdown("### What the fine-tune changed")
    names = [a.name for a in app.adapters(None)]
    pick = gr.Dropdown(choices=names, value=names[0] if names else None, label="Adapter",
                       elem_id="lib-eval-name", interactive=True, allow_custom_value=True)
    # (the page as built is the same for everyone: as for a client that built nothing)
    view = gr.HTML(adapter_eval(app, names[0] if names else None, client=PAGE), elem_id="lib-eval")

    def choices(current):
        names = [a.name for a in app.adapters(None)]
        value = current if current in names else (names[0] if names else None)
        return gr.update(choices=names, value=value), adapter_eval(app, value, requester())

    pick.change(lambda n: adapter_eval(app, n, requester()), pick, view, api_name="adapter_eval",
                concurrency_id="ui")
    return pick, view, (choices, pick, [pick, view])


def create_library_tab(app: ChatEngineSide, read_only: bool | None = None) -> LibraryTab:
    """read_only=None: as the engine says (app.read_only)."""
    if read_only is None:
        read_only = bool(getattr(app, "read_only", False))
    refresh = gr.Button("↻ Refresh", elem_id="lib-refresh", size="sm")
    gr.Markdown("### ONNX base models")
    bases = gr.Dataframe(bases_frame(app), interactive=False, elem_id="lib-bases", wrap=True)
    gr.Markdown("### Adapters")
    adapters = gr.Dataframe(adapters_frame(app, PAGE), interactive=False, elem_id="lib-adapters", wrap=True)
    if read_only:
        message = gr.Markdown("", elem_id="lib-message")
        eval_pick, eval_view, eval_reload = _eval_section(app)

        def reload_tables():
            return bases_frame(app), adapters_frame(app, requester())

        refresh.click(reload_tables, None, [bases, adapters], api_name="library", concurrency_id="ui").then(
            *eval_reload, api_visibility="private", concurrency_id="ui")
        tab = LibraryTab(bases, adapters, None, None, None, refresh, message, eval_view)
        tab.on_load, tab.eval_reload = (reload_tables, None, [bases, adapters]), eval_reload
        return tab
    with gr.Accordion("Delete an adapter", open=False, elem_id="lib-delete-group"):
        with gr.Row():
            to_delete = gr.Dropdown(choices=_deletable(app), value=None,
                                    label="Adapter", elem_id="lib-delete-name", interactive=True,
                                    allow_custom_value=True)
            confirm = gr.Checkbox(False, label="Yes, delete it (cannot be undone)", elem_id="lib-delete-confirm")
            delete = gr.Button("Delete", variant="stop", elem_id="lib-delete")
    message = gr.Markdown("", elem_id="lib-message")
    eval_pick, eval_view, eval_reload = _eval_section(app)

    def reload():
        adapters_df = adapters_frame(app, requester())
        return bases_frame(app), adapters_df, gr.update(choices=_deletable(app), value=None), False

    def do_delete(name, ok):
        if not name:
            gr.Warning("choose an adapter to delete")
            return (*reload(), "⚠ no adapter chosen")
        if not ok:
            gr.Warning("tick the confirmation box to delete")
            return (gr.update(), gr.update(), gr.update(), False, f"⚠ tick the confirmation to delete `{name}`")
        try:
            app.delete_adapter(name, requester())
        except (LibraryError, UIError, OSError) as e:
            msg = app.ws.scrub(str(e))  # (an OSError names the server's folders)
            gr.Warning(msg)
            return (*reload(), f"⚠ {msg}")
        return (*reload(), f"deleted `{name}`")

    outs = [bases, adapters, to_delete, confirm]
    refresh.click(reload, None, outs, api_name="library", concurrency_id="ui").then(
        *eval_reload, api_visibility="private", concurrency_id="ui")
    delete.click(do_delete, [to_delete, confirm], outs + [message], api_name="delete_adapter",
                 concurrency_id="ui").then(*eval_reload, api_visibility="private", concurrency_id="ui")
    tab = LibraryTab(bases, adapters, to_delete, confirm, delete, refresh, message, eval_view)
    tab.on_load, tab.eval_reload = (reload, None, outs), eval_reload
    return tab
