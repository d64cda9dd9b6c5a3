"""The Build tab's job view, rendered from a job's state (pipeline.events.JobState, read back from its
events.jsonl): stages with skip reasons and times, status line, what the fine-tune changed, loss plot, past runs."""
from __future__ import annotations

import html
import time

import gradio as gr
import pandas as pd

from ui.engine import AppEngine
from ui.library_tab import WORSE_ADVICE, eval_html, worse_than_base

LOG_LINES = 400  # the newest lines of the job's log shown

STATE_COLORS = {"done": "#16a34a", "cached": "#0891b2", "skipped": "#6b7280", "running": "#2563eb",
                "failed": "#dc2626", "cancelled": "#d97706", "waiting": "#9ca3af", "interrupted": "#d97706"}


def _secs(v) -> str:
    return f"{v:.1f} s" if isinstance(v, (int, float)) and not isinstance(v, bool) else ""


def stages_html(st) -> str:
    """One row per stage: state ("skipped: <reason>" for a skipped one), progress, time; the times add up
    to the total row."""
    rows, total = [], 0.0
    for s, info in st.stages.items():
        state = info.get("state", "waiting")
        color = STATE_COLORS.get(state, "#6b7280")
        shown = state
        if state in ("skipped", "cached") and info.get("reason"):
            reason = str(info["reason"])
            shown = reason if reason.startswith(state) else f"{state}: {reason}"
        prog = f"{info.get('done', 0)}/{info['total']}" if info.get("total") else ""
        if isinstance(info.get("seconds"), (int, float)):
            total += info["seconds"]
        rows.append(f"<tr><td>{html.escape(s)}</td><td style='color:{color};font-weight:600' "
                    f"data-state='{html.escape(state)}'>{html.escape(shown)}</td><td>{prog}</td>"
                    f"<td>{_secs(info.get('seconds'))}</td></tr>")
    rows.append(f"<tr><td><b>total</b></td><td></td><td></td><td data-k='total'><b>{total:.1f} s</b></td></tr>")
    pct = int(round(100 * st.fraction()))
    bar = (f"<div style='background:#e5e7eb;border-radius:4px;height:8px;margin:4px 0'>"
           f"<div style='background:#2563eb;width:{pct}%;height:8px;border-radius:4px'></div></div>")
    return (f"<div id='build-stages-inner'>{bar}<table style='width:100%'><thead><tr><th>stage</th>"
            f"<th>state</th><th>progress</th><th>time</th></tr></thead><tbody>{''.join(rows)}</tbody>"
            f"</table></div>")


def status_text(job_id: str | None, st) -> str:
    if not job_id:
        return "No build yet."
    line = f"**{job_id}**: <span data-status='{st.status}'>{st.status}</span>"
    if st.status == "running" and st.stage:
        line += f" (stage {st.stage})"
    if st.started:
        end = st.ended if st.status != "running" and st.ended else time.time()
        line += f" · {end - st.started:.0f} s"
    if getattr(st, "resumed_step", None):
        line += f" · resumed at step {st.resumed_step}"
    if st.error:
        line += f"  \n⚠ {html.escape(str(st.error))}"
    if st.result:
        res = st.result
        line += f"  \nresult: adapter `{res.get('adapter')}` on base `{res.get('base')}`"
        worse = worse_than_base(getattr(st, "eval", None) or res.get("eval"))
        if worse is not None:
            line += f"  \n⚠ held-out loss {worse:+.3f}: {WORSE_ADVICE}"
    return line


def job_eval_html(app: AppEngine, st) -> str:
    """What the fine-tune changed, once the job measured it (its eval_result event, else the adapter's
    metadata); '' before."""
    ev = getattr(st, "eval", None)
    name = (st.result or {}).get("adapter")
    if not ev and name and st.status == "ok":
        info = next((a for a in app.adapters(None) if a.name == name), None)
        ev = (info.metadata or {}).get("eval") if info else None
    if not ev:
        return ""
    return eval_html(ev, f"What the fine-tune changed{f': {name}' if name else ''}")


def loss_frame(st) -> pd.DataFrame:
    rows = [(s, l, "train") for s, l in st.steps] + [(s, l, "held-out") for s, l in st.evals]
    if not rows:  # None, not an empty frame: a plot that first gets an empty frame never draws lines
        return None
    # typed columns even when empty: the plot takes its axis types from the first value it gets
    return pd.DataFrame({"step": pd.Series([r[0] for r in rows], dtype="int64"),
                         "loss": pd.Series([r[1] for r in rows], dtype="float64"),
                         "series": pd.Series([r[2] for r in rows], dtype="object")})


LOSS_TITLES = ("Loss", "Loss (train and held-out)")


def loss_plot(st):
    """The loss plot's update: the frame, and a title that changes once held-out points exist. Gradio's
    LinePlot takes its colour domain (the series) from the first frame it draws and rebuilds the chart only when
    a property such as the title changes: without this, a page that watched the build from its start never drew
    the held-out line (a reloaded page did)."""
    frame = loss_frame(st)
    return frame if frame is None else gr.update(value=frame, title=LOSS_TITLES[bool(st.evals)])


RUNS_SHOWN = 100  # the newest runs in the Past runs table and picker (each view of the page carries them)


def runs_frame(all_jobs: list) -> pd.DataFrame:
    """The Past runs table of app.list_jobs(): the newest RUNS_SHOWN."""
    rows = []
    for j in all_jobs[:RUNS_SHOWN]:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j.started)) if j.started else ""
        rows.append([j.job_id, j.status, j.adapter, started, (j.error or "")[:120]])
    return pd.DataFrame(rows, columns=["job", "status", "adapter", "started", "error"])
