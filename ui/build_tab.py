"""Build tab: what to build first ("New adapter on a base": the default whenever a base is published;
"New base from a model": base_model, AWQ and ONNX fields), then the recipe form (generated from
pipeline.recipe.iter_fields), the preset that fills the LoRA fields (editable), dataset upload with a
preview that says which examples are held out, the equivalent CLI command, Start / Cancel / Resume, and a
live view of the job (stages with skip reasons and times, loss curve, log, and at the end what the
fine-tune changed: base vs adapter on the held-out data).

Nothing here trains: a build is a job subprocess (pipeline.jobs). A reloaded page re-attaches to the running
(or latest) job, because everything shown is read back from runs/<id>/events.jsonl; it puts the running
job's recipe into the form only when the form is still untouched (checked in the browser, at the moment
the answer arrives), so a late answer never overwrites what the user typed or uploaded."""
from __future__ import annotations

import hashlib
import html
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import pandas as pd

from artifacts import LimitError, Workspace, check_uploads_room
from pipeline import data as pdata
from pipeline.command import preview_command
from pipeline.data import DataError, load_examples, render_text
from pipeline.events import JobState
from pipeline.presets import PRESETS, apply_preset
from pipeline.recipe import Recipe, RecipeError, default_adapter_name, get_dotted, iter_fields, set_dotted
from ui.engine import AppEngine, UIError
from ui.library_tab import WORSE_ADVICE, eval_html, worse_than_base

MODE_ADAPTER = "New adapter on a base"
MODE_BASE = "New base from a model"
FIELDS = list(iter_fields())
FIELD_NAMES = [n for n, _, _ in FIELDS]
META = {n: m for n, _, m in FIELDS}
DEFAULTS = {n: d for n, d, _ in FIELDS}
PRESET_FIELDS = sorted({k for values in PRESETS.values() for k in values if k in META})
LOG_LINES = 400
# where each field goes; a field not listed lands in "More settings"
SECTIONS = {
    "base": ["base"],
    "new_base": ["base_model", "base_name", "trust_remote_code"],
    "data": ["train_file", "eval_file", "eval_fraction", "data_format", "template"],
    "adapter": ["adapter_name", "replace"],
    "lora": ["preset"] + [n for n in FIELD_NAMES if n.startswith("lora.")],
    "awq": [n for n in FIELD_NAMES if n.startswith("awq.")],
    "onnx": [n for n in FIELD_NAMES if n.startswith("onnx.")],
}
PLACED = {n for names in SECTIONS.values() for n in names}
SECTIONS["more"] = [n for n in FIELD_NAMES if n not in PLACED]


def elem_id(name: str) -> str:
    return "build-" + name.replace(".", "-").replace("_", "-")


LABELS = {"replace": "Replace existing adapter", "adapter_name": "Adapter name", "base_model": "Base model",
          "preset": "Preset"}


def _label(name: str, meta: dict) -> str:
    return meta.get("label") or LABELS.get(name) or name.split(".")[-1].replace("_", " ")


def make_component(name: str, default, meta: dict, **kw):
    label, info = _label(name, meta), meta.get("help") or None
    eid = elem_id(name)
    if meta.get("choices"):
        return gr.Dropdown(choices=list(meta["choices"]), value=default, label=label, info=info, elem_id=eid,
                           **kw)
    if isinstance(default, bool):
        return gr.Checkbox(value=default, label=label, info=info, elem_id=eid, **kw)
    if isinstance(default, list):
        return gr.Textbox(value=",".join(default), label=label + " (comma-separated)", info=info,
                          elem_id=eid, **kw)
    if isinstance(default, (int, float)):
        lo, hi = meta.get("min"), meta.get("max")
        is_int = isinstance(default, int)
        if lo == 0 and hi is not None and not is_int and hi <= 1.0:
            return gr.Slider(lo, hi, value=default, step=0.01, label=label, info=info, elem_id=eid, **kw)
        # no minimum/maximum for Gradio: it refused a value out of range before any handler ran, with a
        # toast that named no field, error badges on other outputs and a traceback in the server's log. The
        # recipe's bounds say which field and what is allowed ("cannot start: lora.learning_rate = ...").
        if lo is not None or hi is not None:
            span = f"{lo:g} to {hi:g}" if lo is not None and hi is not None else (
                f"at least {lo:g}" if lo is not None else f"at most {hi:g}")
            info = f"{info} ({span})" if info else span
        return gr.Number(value=default, label=label, info=info, elem_id=eid,
                         precision=0 if is_int else None, step=1 if is_int else 1e-5, **kw)
    return gr.Textbox(value=default, label=label, info=info, elem_id=eid, **kw)


def recipe_from_values(values) -> Recipe:
    """A Recipe from the form values (in FIELD_NAMES order); RecipeError names the bad field."""
    r = Recipe()
    for name, value in zip(FIELD_NAMES, values):
        if value is None:
            raise RecipeError(f"{name} is empty")
        if isinstance(value, float) and isinstance(get_dotted(r, name), int) and value.is_integer():
            value = int(value)
        set_dotted(r, name, value)
    return r


def recipe_from_form(mode, *values) -> Recipe:
    """The recipe of the whole form: the mode (first) decides between a base to build onto and a new base."""
    r = recipe_from_values(values)
    if mode == MODE_BASE:
        r.base = ""
    elif not r.base:
        raise RecipeError("choose the base the adapter is built onto (or pick 'New base from a model')")
    return r


def values_of(recipe: Recipe) -> list:
    out = []
    for name in FIELD_NAMES:
        v = get_dotted(recipe, name)
        out.append(",".join(v) if isinstance(v, list) else v)
    return out


PATH_FIELDS = ("train_file", "eval_file", "base_model")


def form_values(recipe: Recipe, fallback_base: str | None, ws: Workspace | None = None) -> list:
    """[mode] + field values of a recipe; a new-base recipe keeps the base picker on `fallback_base`. A job's
    recipe holds the absolute paths its files were pinned to (Workspace.pin_input); the form, which whoever
    has the link sees, shows those inside the workspace `ws` relative to it (what an upload gives, and what
    a request may name), never the server's absolute path."""
    values = values_of(recipe)
    if not recipe.base:
        values[FIELD_NAMES.index("base")] = fallback_base or ""
    if ws is not None:
        for i in map(FIELD_NAMES.index, PATH_FIELDS):
            if isinstance(values[i], str) and Path(values[i]).is_absolute():
                values[i] = ws.named(values[i]) or values[i]  # outside both: a root the operator allowed
    return [MODE_BASE if not recipe.base else MODE_ADAPTER] + values


def preset_recipe(recipe: Recipe, preset_of) -> tuple[Recipe, str]:
    """The recipe with its preset's values filled in, and a line saying which preset that is (`preset_of`:
    AppEngine.preset_of, the preset of what the policy allows)."""
    if recipe.preset == "custom":
        return recipe, "preset **custom**: the values as you set them"
    name = preset_of(recipe)
    why = ""
    if recipe.preset == "auto":
        why = (" (auto: a small model)" if name == "demo" else " (auto: a 3-4 B model, or a model not on disk yet)")
    out = apply_preset(recipe, name)
    out.preset = recipe.preset  # the form keeps the user's choice ('auto'), the note says what it became
    return out, f"preset **{name}**{why}: the LoRA fields below; edit any to make it custom"


def apply_overrides(overrides: dict, preset_of) -> Recipe:
    """Default recipe + overrides given as nested dicts and/or dotted keys (API use; Recipe.from_dict checks
    them), with its preset's values for the fields the overrides do not give (as the CLI does)."""
    if not isinstance(overrides, dict):
        raise RecipeError("the recipe must be a JSON object of fields")
    flat: dict = {}

    def walk(d, prefix):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[prefix + str(k)] = v
    walk(overrides, "")
    nested: dict = {}
    for key, value in flat.items():
        *path, last = key.split(".")
        d = nested
        for p in path:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                raise RecipeError(f"{p} must be a mapping")
        d[last] = value
    r = Recipe.from_dict(nested)
    return apply_preset(r, preset_of(r), set(flat))


# ------------------------------------------------------------------ rendering the job view
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


# ------------------------------------------------------------------ data preview
_tokenizers: dict = {}


def _tokenizer(app: AppEngine, base_model: str):
    """The tokenizer of an allowed base model (app.preview_model); its code is never run
    (trust_remote_code=False whatever the form says), a Hub id only from the local cache."""
    from transformers import AutoTokenizer
    model = app.preview_model(base_model)
    if model not in _tokenizers:
        _tokenizers[model] = AutoTokenizer.from_pretrained(model, trust_remote_code=False,
                                                           local_files_only=True)
    return _tokenizers[model]


def preview_data(app: AppEngine, train_file: str, fmt: str, template: str, base_model: str, trust: bool,
                 rows: int = 3, eval_file: str = "", eval_fraction: float = 0.1, seed: int = 0) -> str:
    """The data file checked, the held-out part named (pipeline.data.preview), and the first examples
    rendered as the model will see them."""
    if not (train_file or "").strip():
        return "⚠ no training file"
    path = eval_path = None

    def shown(msg: str) -> str:  # texts that name the resolved files name them as the workspace does
        for p in (eval_path, path):
            if p:
                msg = msg.replace(str(p), app.ws.shown(p))
        return msg

    try:
        path = app.data_file(train_file)
        examples = load_examples(path, fmt or "auto")
        eval_path = str(app.data_file(eval_file, "eval_file")) if (eval_file or "").strip() else ""
        split = shown(pdata.preview(path, fmt or "auto", eval_path,
                                    float(eval_fraction if eval_fraction is not None else 0.1), int(seed or 0)))
    except UIError as e:
        return f"⚠ {html.escape(str(e))}"
    except DataError as e:
        return f"⚠ **bad data file**: {html.escape(shown(str(e)))}"
    head = f"✓ {html.escape(split)}\n\nFirst {min(rows, len(examples))} rendered"
    note = ""
    try:
        tok = None if template else _tokenizer(app, base_model)
        texts = [render_text(ex, tok, template or "") for ex in examples[:rows]]
        head += " with " + ("the text template" if template else "the model's chat template") + ":"
    except DataError as e:
        return f"⚠ **template**: {html.escape(str(e))}"
    except Exception as e:  # tokenizer not available (e.g. a Hub id offline): show the raw turns
        note = f"\n\n(could not load the tokenizer of {base_model!r}: {str(e).splitlines()[0][:200]})"
        texts = ["\n".join(f"{m['role']}: {m['content']}" for m in ex["messages"]) for ex in examples[:rows]]
    blocks = "\n\n".join(f"```text\n{_cap(t)}\n```" for t in texts)
    return head + note + "\n\n" + blocks


PREVIEW_CHARS = 2000  # characters of one rendered example shown in the preview


def _cap(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + f" … ({len(text):,} characters)"


def store_upload(app: AppEngine, tmp_path: str) -> str:
    """Copies an uploaded file into <workspace>/uploads/ under a content-addressed name; returns the path
    relative to the workspace (what the form shows)."""
    src = Path(tmp_path)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:10]
    dest_dir = app.ws.root / "uploads"
    dest_dir.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in src.stem)[:40] or "data"
    dest = dest_dir / f"{stem}-{digest}.jsonl"
    if not dest.exists():
        try:
            check_uploads_room(dest_dir, src.stat().st_size)  # requests cannot fill the disk
        except LimitError as e:
            raise UIError(str(e)) from None
        shutil.copyfile(src, dest)
    return f"uploads/{dest.name}"


def name_placeholder(app: AppEngine, train_file: str) -> str:
    try:
        return f"empty: {default_adapter_name(train_file or '', app.adapters_dir)} (from the training file)"
    except Exception:
        return "empty: derived from the training file"


# ------------------------------------------------------------------ restoring a reloaded page
# Runs in the browser when the page-load answer arrives: the running job's recipe goes into the form only
# when every field still holds its initial value and nothing was uploaded; otherwise the form is kept and
# a note offers the "Load its recipe" button. Synchronous, so nothing typed in between is lost.
RESTORE_JS = """
(payload, upload, ...current) => {
  const initial = %s;
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b) || String(a) === String(b);
  const untouched = !upload && current.every((v, i) => same(v, initial[i]));
  if (!payload || !payload.values) return [...current, ""];
  if (!untouched) return [...current, "The form keeps your edits; job **" + payload.job +
      "** is running: pick it under Past runs and press *Load its recipe* to see its settings."];
  return [...payload.values, "The form shows the recipe of job **" + payload.job + "**, which was running when the page was loaded."];
}
"""
# The log box follows its newest lines unless the user scrolled up in it.
FOLLOW_LOG_JS = """
() => {
  if (window.__buildLogFollow) return;
  window.__buildLogFollow = true;
  document.addEventListener('scroll', (e) => {
    const t = e.target;
    if (t && t.matches && t.matches('#build-log textarea'))
      t.dataset.follow = (t.scrollTop + t.clientHeight >= t.scrollHeight - 30) ? '1' : '0';
  }, true);
  setInterval(() => {
    const t = document.querySelector('#build-log textarea');
    if (t && t.dataset.follow !== '0' && t.scrollTop + t.clientHeight < t.scrollHeight) t.scrollTop = t.scrollHeight;
  }, 300);
}
"""


# ------------------------------------------------------------------ the tab
@dataclass
class BuildTab:
    mode: gr.Radio | None = None
    fields: dict = field(default_factory=dict)
    command: gr.Code | None = None
    job_id: gr.Textbox | None = None
    status: gr.Markdown | None = None
    stages: gr.HTML | None = None
    evaluation: gr.HTML | None = None
    log: gr.Textbox | None = None
    plot: gr.LinePlot | None = None
    runs: gr.Dataframe | None = None
    run_select: gr.Dropdown | None = None
    timer: gr.Timer | None = None
    start: gr.Button | None = None
    cancel: gr.Button | None = None
    resume: gr.Button | None = None
    outputs: list = field(default_factory=list)
    on_load: list = field(default_factory=list)  # [(fn, inputs, outputs, js, api_name)]: demo.load, then .then
    initial: list = field(default_factory=list)  # the form's initial values ([mode] + fields)
    follow_log_js: str = ""


def initial_recipe(app: AppEngine) -> tuple[list, str]:
    """The form a fresh page shows: an adapter on the default base when there is one (else a new base),
    the preset's values filled in."""
    bases = app.base_names()
    r = Recipe()
    if not bases:
        r.base = ""
    elif r.base not in bases:
        r.base = app.default_base()
    r, note = preset_recipe(r, app.preset_of)
    return form_values(r, app.default_base(), app.ws), note


NOT_TAKEN = "  \nThe upload was not taken and the training file is now empty: upload a valid file or type a path."


class BuildService:
    """The Build tab's handlers: every request goes through the AppEngine (policy, jobs)."""

    def __init__(self, app: AppEngine):
        self.app = app

    def command_of(self, *values):
        try:
            r = recipe_from_form(*values)
            if r.preset == "auto":  # the values shown are the resolved preset's: say which
                r.preset = self.app.preset_of(r)
            return preview_command(r)
        except (RecipeError, ValueError) as e:
            return f"# error: {e}"

    def fill_preset(self, *values):
        """The LoRA fields from the preset of the chosen base / model (nothing changes for 'custom')."""
        try:
            r, note = preset_recipe(recipe_from_form(*values), self.app.preset_of)
        except (RecipeError, ValueError) as e:
            return [gr.update()] * len(PRESET_FIELDS) + [f"⚠ {self.app.ws.scrub(str(e))}"]
        return [get_dotted(r, n) for n in PRESET_FIELDS] + [note]

    def preset_note(self, *values):
        try:
            return preset_recipe(recipe_from_form(*values), self.app.preset_of)[1]
        except (RecipeError, ValueError) as e:
            return f"⚠ {self.app.ws.scrub(str(e))}"

    def on_mode(self, mode):
        new = mode == MODE_BASE
        return (gr.update(visible=not new), gr.update(visible=new), gr.update(visible=new),
                gr.update(visible=new))

    def view(self, job_id, last):
        """Status, stages, loss, log, evaluation (and runs when something changed) of the shown job."""
        if not job_id:
            cur = self.app.current_job()
            if cur is None:  # said once: a message shown in the status line (e.g. cannot start) stays
                return ((gr.update(),) * 9) if last == "none" else (("", "No build yet.") + (gr.update(),) * 6
                                                                     + ("none",))
            job_id = cur
        try:
            st = self.app.job_state(job_id)
        except UIError as e:
            return (job_id, f"⚠ {e}") + (gr.update(),) * 6 + (last,)
        key = f"{job_id}:{st.status}:{len(st.lines)}"
        if key == last:  # nothing new: leave the components alone (the running time is in the status line)
            return (gr.update(),) * 8 + (last,)
        runs, run_select = gr.update(), gr.update()
        if key.rsplit(":", 1)[0] != last.rsplit(":", 1)[0]:  # another job or status: the runs changed
            all_jobs = self.app.list_jobs()
            runs = runs_frame(all_jobs)
            run_select = gr.update(choices=[j.job_id for j in all_jobs[:RUNS_SHOWN]], value=job_id)
        scrub = self.app.ws.scrub  # job logs quote libraries that name the server's folders
        return (job_id, scrub(status_text(job_id, st)), scrub(stages_html(st)), loss_plot(st),
                scrub("\n".join(st.lines[-LOG_LINES:])), job_eval_html(self.app, st), runs, run_select, key)

    def launch(self, recipe: Recipe) -> str:
        recipe = self.app.check_recipe(recipe)  # the request policy, before any file is read
        recipe.validate()
        _check_data(self.app, recipe)
        return self.app.start(recipe)

    def start(self, *values):
        try:
            job_id = self.launch(recipe_from_form(*values))
        except (RecipeError, UIError, ValueError, RuntimeError) as e:
            msg = self.app.ws.scrub(str(e))
            gr.Warning(msg)
            return gr.update(), f"⚠ cannot start: {html.escape(msg)}", gr.update()
        return job_id, f"**{job_id}**: started", ""

    def cancel(self, job_id):
        try:
            secs = self.app.cancel(job_id)
        except UIError as e:
            gr.Warning(self.app.ws.scrub(str(e)))
            return f"⚠ {self.app.ws.scrub(str(e))}"
        return f"**{job_id}**: cancelled in {secs:.1f} s"

    def resume(self, job_id):
        try:
            self.app.resume(job_id)
        except (UIError, RuntimeError) as e:
            gr.Warning(self.app.ws.scrub(str(e)))
            return f"⚠ {self.app.ws.scrub(str(e))}"
        return f"**{job_id}**: resumed"

    def select_run(self, job_id):
        return job_id or "", ""

    def load_form(self, job_id):
        try:
            return form_values(self.app.recipe_of(job_id), self.app.default_base(), self.app.ws) + [""]
        except Exception as e:
            gr.Warning(self.app.ws.scrub(f"cannot load the recipe of {job_id!r}: {e}"))
            return [gr.update()] * (1 + len(FIELD_NAMES)) + [gr.update()]

    def on_upload(self, file, fmt, template, base_model, trust, eval_file, eval_fraction, seed):
        if not file:
            return gr.update(), ""
        path = file if isinstance(file, str) else getattr(file, "name", str(file))
        try:
            load_examples(path, fmt or "auto")
        except DataError as e:
            msg = str(e).replace(str(path), Path(path).name)
            gr.Warning("bad data file: " + msg)
            # the training file is emptied: a refused upload must not leave the form's previous file (the demo
            # set by default) in place for Start to build on without a word
            return "", f"⚠ **bad data file**: {html.escape(msg)}{NOT_TAKEN}"
        try:
            dest = store_upload(self.app, path)
        except UIError as e:
            gr.Warning(str(e))
            return "", f"⚠ {html.escape(str(e))}{NOT_TAKEN}"
        return dest, preview_data(self.app, dest, fmt, template, base_model, trust, eval_file=eval_file,
                                  eval_fraction=eval_fraction, seed=seed)

    def check_data(self, train_file, fmt, template, base_model, trust, eval_file="", eval_fraction=0.1, seed=0):
        return preview_data(self.app, train_file, fmt, template, base_model, trust, eval_file=eval_file,
                            eval_fraction=eval_fraction, seed=seed)

    def build_recipe(self, overrides: dict) -> dict:
        """Start a build: the default recipe with `overrides` (nested or dotted field names)."""
        try:
            recipe = apply_overrides(overrides or {}, self.app.preset_of)
            job_id = self.launch(recipe)
        except (RecipeError, UIError, ValueError, RuntimeError) as e:
            return {"ok": False, "error": self.app.ws.scrub(str(e))}
        return {"ok": True, "job_id": job_id, "command": preview_command(recipe)}

    def job_summary(self, job_id: str) -> dict:
        """State of a job: status, error, result, stages, last steps, resumed step, evaluation."""
        try:
            st = self.app.job_state(job_id)
        except UIError as e:
            return {"job_id": job_id, "status": "unknown", "error": str(e)}
        return self.app.ws.scrub({"job_id": job_id, "status": st.status, "error": st.error, "result": st.result,
                                  "stages": st.stages, "steps": st.steps[-5:], "evals": st.evals[-5:],
                                  "resumed_step": getattr(st, "resumed_step", None),
                                  "eval": getattr(st, "eval", None), "log_tail": st.lines[-20:]})

    def page_state(self):
        """What a freshly loaded page needs: the job to show, the running job's recipe (the browser
        decides whether it goes into the form), the published bases, the derived adapter name."""
        running = self.app.running_job()
        payload = None
        if running:
            try:
                payload = {"job": running, "values": form_values(self.app.recipe_of(running), self.app.default_base(),
                                                                 self.app.ws)}
            except (UIError, RecipeError, OSError):
                payload = None
        return running or self.app.current_job() or "", "", payload, gr.update(choices=self.app.base_names())

    def job_recipe(self, job_id: str) -> dict:
        """The recipe of a job, as the form shows it: {"mode", "fields": {dotted name: value}}."""
        try:
            values = form_values(self.app.recipe_of(job_id), self.app.default_base(), self.app.ws)
        except (UIError, RecipeError, OSError) as e:
            return {"error": self.app.ws.scrub(str(e))}
        return {"mode": values[0], "fields": dict(zip(FIELD_NAMES, values[1:]))}


def create_build_tab(app: AppEngine) -> BuildTab:
    tab = BuildTab()
    comps = tab.fields
    initial, preset_note0 = initial_recipe(app)
    tab.initial = initial
    init = dict(zip(FIELD_NAMES, initial[1:]))
    adapter_mode = initial[0] == MODE_ADAPTER

    def place(section: str, per_row: int = 2):
        names = SECTIONS[section]
        for i in range(0, len(names), per_row):
            with gr.Row():
                for name in names[i:i + per_row]:
                    comps[name] = make_component(name, init[name], META[name])

    with gr.Row():
        with gr.Column(scale=3):
            tab.mode = gr.Radio([MODE_ADAPTER, MODE_BASE], value=initial[0], label="What to build",
                                elem_id="build-mode",
                                info="An adapter trains on exactly the weights of the base it is built onto "
                                     "and appears in that base's Chat picker; a new base runs AWQ and the "
                                     "ONNX build first.")
            with gr.Group(visible=adapter_mode, elem_id="build-group-base") as base_group:
                comps["base"] = gr.Dropdown(choices=app.base_names(), value=init["base"], label="Base",
                                            info=META["base"].get("help"), elem_id=elem_id("base"),
                                            interactive=True, allow_custom_value=True)
            with gr.Group(visible=not adapter_mode, elem_id="build-group-new-base") as new_base_group:
                place("new_base")
            with gr.Accordion("Data", open=True, elem_id="build-group-data"):
                place("data")
                upload = gr.File(label="Upload a training set (JSONL)", file_types=[".jsonl", ".json"],
                                 elem_id="build-upload")
                check = gr.Button("Check & preview data", elem_id="build-check-data", size="sm")
                data_preview = gr.Markdown("", elem_id="build-data-preview")
            with gr.Accordion("Adapter", open=True, elem_id="build-group-adapter"):
                comps["adapter_name"] = make_component("adapter_name", init["adapter_name"],
                                                       META["adapter_name"],
                                                       placeholder=name_placeholder(app, init["train_file"]))
                comps["replace"] = make_component("replace", init["replace"], META["replace"])
            with gr.Accordion("LoRA fine-tuning", open=True, elem_id="build-group-lora"):
                preset_note = gr.Markdown(preset_note0, elem_id="build-preset-note")
                place("lora")
            with gr.Accordion("AWQ (activation-aware 4-bit preparation)", open=False, visible=not adapter_mode,
                              elem_id="build-group-awq") as awq_group:
                place("awq")
            with gr.Accordion("ONNX model", open=False, visible=not adapter_mode,
                              elem_id="build-group-onnx") as onnx_group:
                place("onnx")
            if SECTIONS["more"]:
                with gr.Accordion("More settings", open=False, elem_id="build-group-more"):
                    place("more")
        with gr.Column(scale=4):
            with gr.Row():
                tab.start = gr.Button("Start", variant="primary", elem_id="build-start")
                tab.cancel = gr.Button("Cancel", variant="stop", elem_id="build-cancel")
                tab.resume = gr.Button("Resume", elem_id="build-resume")
            tab.command = gr.Code("", language="shell", label="Equivalent command", elem_id="build-command",
                                  lines=1, interactive=False, wrap_lines=True, show_line_numbers=False)
            restore_note = gr.Markdown("", elem_id="build-restore-note")
            tab.job_id = gr.Textbox("", label="Job", elem_id="build-job-id", interactive=False)
            tab.status = gr.Markdown("No build yet.", elem_id="build-status")
            tab.stages = gr.HTML(stages_html(JobState()), elem_id="build-stages")
            tab.plot = gr.LinePlot(None, x="step", y="loss", color="series",
                                   title=LOSS_TITLES[0], elem_id="build-loss", height=260,
                                   color_map={"train": "#2563eb", "held-out": "#dc2626"})
            tab.log = gr.Textbox("", label="Log", lines=14, max_lines=14, elem_id="build-log",
                                 interactive=False, autoscroll=True)
            tab.evaluation = gr.HTML("", elem_id="build-eval")
            with gr.Accordion("Past runs", open=True, elem_id="build-runs-group"):
                with gr.Row():
                    tab.run_select = gr.Dropdown(choices=[], value=None, label="Show run",
                                                 elem_id="build-run-select", interactive=True,
                                                 allow_custom_value=True, scale=3)
                    load_recipe = gr.Button("Load its recipe into the form", size="sm",
                                            elem_id="build-load-recipe", scale=1)
                tab.runs = gr.Dataframe(runs_frame(app.list_jobs()), interactive=False, elem_id="build-runs",
                                        wrap=True, max_height=300)
    tab.timer = gr.Timer(1.0)
    last_key = gr.State("")
    restore = gr.JSON(None, visible=False, elem_id="build-restore")
    fields = [comps[n] for n in FIELD_NAMES]
    form = [tab.mode] + fields
    preset_outs = [comps[n] for n in PRESET_FIELDS]

    svc = BuildService(app)
    view_outputs = [tab.job_id, tab.status, tab.stages, tab.plot, tab.log, tab.evaluation, tab.runs,
                    tab.run_select, last_key]

    for c in form:
        c.change(svc.command_of, form, tab.command, api_visibility="private", queue=False,
                 trigger_mode="always_last")
    tab.mode.change(svc.on_mode, tab.mode, [base_group, new_base_group, awq_group, onnx_group],
                    api_visibility="private", queue=False)
    # user choices only (.input): a restored recipe keeps its own values
    for c in (tab.mode, comps["base"], comps["preset"]):
        c.input(svc.fill_preset, form, preset_outs + [preset_note], api_visibility="private", queue=False)
    comps["base_model"].blur(svc.fill_preset, form, preset_outs + [preset_note], api_visibility="private",
                             queue=False)
    comps["preset"].change(svc.preset_note, form, preset_note, api_visibility="private", queue=False)  # also restored
    for c in preset_outs:  # an edited preset value makes the preset custom
        c.input(lambda: ("custom", "preset **custom**: the values as you set them"), None,
                [comps["preset"], preset_note], api_visibility="private", queue=False)
    comps["train_file"].change(lambda f: gr.update(placeholder=name_placeholder(app, f)), comps["train_file"],
                               comps["adapter_name"], api_visibility="private", queue=False)
    data_inputs = [comps["data_format"], comps["template"], comps["base_model"], comps["trust_remote_code"],
                   comps["eval_file"], comps["eval_fraction"], comps["lora.seed"]]
    upload.upload(svc.on_upload, [upload] + data_inputs, [comps["train_file"], data_preview],
                  api_visibility="private", concurrency_id="ui")
    check.click(svc.check_data, [comps["train_file"]] + data_inputs, data_preview, api_name="preview_data",
                concurrency_id="ui")
    # (the status line shows no Gradio progress text: "processing | 0.1/0.1s" stayed in it)
    tab.start.click(svc.start, form, [tab.job_id, tab.status, last_key], api_name="start_build",
                    concurrency_id="build", concurrency_limit=1, show_progress="hidden")
    tab.cancel.click(svc.cancel, tab.job_id, tab.status, api_name="cancel_build", concurrency_id="build_ctl",
                     show_progress="hidden")
    tab.resume.click(svc.resume, tab.job_id, tab.status, api_name="resume_build", concurrency_id="build",
                     concurrency_limit=1, show_progress="hidden").then(lambda: "", None, last_key, queue=False,
                                                api_visibility="private")
    tab.run_select.input(svc.select_run, tab.run_select, [tab.job_id, last_key], api_visibility="private",
                         queue=False)
    load_recipe.click(svc.load_form, tab.run_select, form + [restore_note], api_visibility="private", queue=False)
    tab.timer.tick(svc.view, [tab.job_id, last_key], view_outputs, api_visibility="private",
                   concurrency_id="poll", concurrency_limit=None, show_progress="hidden")
    gr.api(svc.build_recipe, api_name="build_recipe", concurrency_id="build", concurrency_limit=1)
    gr.api(svc.job_summary, api_name="job_summary", concurrency_id="poll", concurrency_limit=None)
    gr.api(svc.job_recipe, api_name="job_recipe", concurrency_id="poll", concurrency_limit=None)

    tab.on_load = [
        (svc.page_state, None, [tab.job_id, last_key, restore, comps["base"]], None, "build_page_state"),
        (None, [restore, upload] + form, form + [restore_note], RESTORE_JS % json.dumps(initial), None),
        (svc.command_of, form, [tab.command], None, None),
        # the name an empty adapter name becomes, as of now (the page was built when the app started)
        (lambda f: gr.update(placeholder=name_placeholder(app, f)), [comps["train_file"]], [comps["adapter_name"]],
         None, None),
    ]
    tab.follow_log_js = FOLLOW_LOG_JS
    tab.outputs = view_outputs
    return tab


def _check_data(app: AppEngine, recipe: Recipe) -> None:
    for f in (recipe.train_file, recipe.eval_file):
        if f and f.strip():
            path = app.ws.resolve_input(f)
            try:
                load_examples(path, recipe.data_format)
            except DataError as e:  # named as the workspace names it, never the server's folders
                raise UIError(f"bad data file: {str(e).replace(str(path), app.ws.shown(path))}") from None
