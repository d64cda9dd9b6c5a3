"""Build tab: the recipe form (generated from pipeline.recipe.iter_fields), dataset upload with
validation and a rendered preview, the equivalent CLI command, Start / Cancel / Resume, and a live
view of the job (log, stage table, loss curve) that polls the job's event file once a second.

Nothing here trains: a build is a job subprocess (pipeline.jobs); a refreshed browser re-attaches
to the running (or latest) job because everything shown is read back from runs/<id>/events.jsonl."""
from __future__ import annotations

import hashlib
import html
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import pandas as pd

from artifacts import LimitError, check_uploads_room

from pipeline.__main__ import preview_command
from pipeline.data import DataError, load_examples, render_text
from pipeline.events import STAGES, JobState
from pipeline.recipe import Recipe, RecipeError, get_dotted, iter_fields, set_dotted
from ui.engine import AppEngine, UIError

GROUPS = [("", "Model & data"), ("awq.", "AWQ (activation-aware 4-bit preparation)"),
          ("lora.", "LoRA fine-tuning"), ("onnx.", "ONNX model")]
FIELDS = list(iter_fields())
FIELD_NAMES = [n for n, _, _ in FIELDS]
LOG_LINES = 400


def elem_id(name: str) -> str:
    return "build-" + name.replace(".", "-").replace("_", "-")


def _label(name: str, meta: dict) -> str:
    return meta.get("label") or name.split(".")[-1].replace("_", " ")


def make_component(name: str, default, meta: dict):
    label, info = _label(name, meta), meta.get("help") or None
    eid = elem_id(name)
    if meta.get("choices"):
        return gr.Dropdown(choices=list(meta["choices"]), value=default, label=label, info=info, elem_id=eid)
    if isinstance(default, bool):
        return gr.Checkbox(value=default, label=label, info=info, elem_id=eid)
    if isinstance(default, list):
        return gr.Textbox(value=",".join(default), label=label + " (comma-separated)", info=info,
                          elem_id=eid)
    if isinstance(default, (int, float)):
        lo, hi = meta.get("min"), meta.get("max")
        is_int = isinstance(default, int)
        if lo == 0 and hi is not None and not is_int and hi <= 1.0:
            return gr.Slider(lo, hi, value=default, step=0.01, label=label, info=info, elem_id=eid)
        return gr.Number(value=default, label=label, info=info, elem_id=eid, minimum=lo, maximum=hi,
                         precision=0 if is_int else None, step=1 if is_int else 1e-5)
    return gr.Textbox(value=default, label=label, info=info, elem_id=eid)


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


def values_of(recipe: Recipe) -> list:
    out = []
    for name in FIELD_NAMES:
        v = get_dotted(recipe, name)
        out.append(",".join(v) if isinstance(v, list) else v)
    return out


def apply_overrides(overrides: dict) -> Recipe:
    """Default recipe + overrides given as nested dicts and/or dotted keys (API use)."""
    if not isinstance(overrides, dict):
        raise RecipeError("the recipe must be a JSON object of fields")
    flat: dict = {}

    def walk(d, prefix):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[prefix + k] = v
    walk(overrides, "")
    r = Recipe()
    for k, v in flat.items():
        if k not in FIELD_NAMES:
            raise RecipeError(f"unknown recipe field {k!r}")
        set_dotted(r, k, v)
    return r


# ------------------------------------------------------------------ rendering the job view
STATE_COLORS = {"done": "#16a34a", "cached": "#0891b2", "skipped": "#6b7280", "running": "#2563eb",
                "failed": "#dc2626", "cancelled": "#d97706", "waiting": "#9ca3af", "interrupted": "#d97706"}


def stages_html(st) -> str:
    rows = []
    for s in STAGES:
        info = st.stages.get(s, {})
        state = info.get("state", "waiting")
        color = STATE_COLORS.get(state, "#6b7280")
        prog = f"{info.get('done', 0)}/{info['total']}" if info.get("total") else ""
        secs = f"{info['seconds']:.1f} s" if isinstance(info.get("seconds"), (int, float)) else ""
        rows.append(f"<tr><td>{s}</td><td style='color:{color};font-weight:600' data-state='{state}'>"
                    f"{state}</td><td>{prog}</td><td>{secs}</td></tr>")
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
    if st.error:
        line += f"  \n⚠ {html.escape(str(st.error))}"
    if st.result:
        res = st.result
        line += f"  \nresult: adapter `{res.get('adapter')}` on base `{res.get('base')}`"
    return line


def loss_frame(st) -> pd.DataFrame:
    rows = [(s, l, "train") for s, l in st.steps] + [(s, l, "held-out") for s, l in st.evals]
    if not rows:  # None, not an empty frame: a plot that first gets an empty frame never draws lines
        return None
    # typed columns even when empty: the plot takes its axis types from the first value it gets
    return pd.DataFrame({"step": pd.Series([r[0] for r in rows], dtype="int64"),
                         "loss": pd.Series([r[1] for r in rows], dtype="float64"),
                         "series": pd.Series([r[2] for r in rows], dtype="object")})


def runs_frame(all_jobs: list) -> pd.DataFrame:
    """The Past runs table of app.list_jobs()."""
    rows = []
    for j in all_jobs:
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
                 rows: int = 3) -> str:
    if not (train_file or "").strip():
        return "⚠ no training file"
    try:
        path = app.data_file(train_file)
        examples = load_examples(path, fmt or "auto")
    except UIError as e:
        return f"⚠ {html.escape(str(e))}"
    except DataError as e:
        return f"⚠ **bad data file**: {html.escape(str(e))}"
    head = f"✓ `{path.name}`: {len(examples)} examples. First {min(rows, len(examples))} rendered"
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


def store_upload(app: AppEngine, tmp_path: str) -> Path:
    """Copies an uploaded file into <workspace>/uploads/ under a content-addressed name."""
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
    return dest


# ------------------------------------------------------------------ the tab
@dataclass
class BuildTab:
    fields: dict = field(default_factory=dict)
    command: gr.Code | None = None
    job_id: gr.Textbox | None = None
    status: gr.Markdown | None = None
    stages: gr.HTML | None = None
    log: gr.Textbox | None = None
    plot: gr.LinePlot | None = None
    runs: gr.Dataframe | None = None
    run_select: gr.Dropdown | None = None
    timer: gr.Timer | None = None
    start: gr.Button | None = None
    cancel: gr.Button | None = None
    resume: gr.Button | None = None
    outputs: list = field(default_factory=list)
    on_load: object = None


def create_build_tab(app: AppEngine) -> BuildTab:
    tab = BuildTab()
    comps = tab.fields
    with gr.Row():
        with gr.Column(scale=3):
            for prefix, title in GROUPS:
                names = [(n, d, m) for n, d, m in FIELDS
                         if (prefix == "" and "." not in n) or (prefix and n.startswith(prefix))]
                with gr.Accordion(title, open=(prefix == ""),
                                  elem_id="build-group-" + (prefix.rstrip(".") or "model")):
                    for i in range(0, len(names), 2):
                        with gr.Row():
                            for name, default, meta in names[i:i + 2]:
                                comps[name] = make_component(name, default, meta)
                    if prefix == "":
                        upload = gr.File(label="Upload a training set (JSONL)", file_types=[".jsonl", ".json"],
                                         elem_id="build-upload")
                        check = gr.Button("Check & preview data", elem_id="build-check-data", size="sm")
                        data_preview = gr.Markdown("", elem_id="build-data-preview")
        with gr.Column(scale=4):
            with gr.Row():
                tab.start = gr.Button("Start", variant="primary", elem_id="build-start")
                tab.cancel = gr.Button("Cancel", variant="stop", elem_id="build-cancel")
                tab.resume = gr.Button("Resume", elem_id="build-resume")
            tab.command = gr.Code("", language="shell", label="Equivalent command", elem_id="build-command",
                                  lines=1, interactive=False, wrap_lines=True, show_line_numbers=False)
            tab.job_id = gr.Textbox("", label="Job", elem_id="build-job-id", interactive=False)
            tab.status = gr.Markdown("No build yet.", elem_id="build-status")
            tab.stages = gr.HTML(stages_html(JobState()), elem_id="build-stages")
            tab.plot = gr.LinePlot(None, x="step", y="loss", color="series",
                                   title="Loss", elem_id="build-loss", height=260,
                                   color_map={"train": "#2563eb", "held-out": "#dc2626"})
            tab.log = gr.Textbox("", label="Log", lines=14, max_lines=14, elem_id="build-log",
                                 interactive=False, autoscroll=True)
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
    form = [comps[n] for n in FIELD_NAMES]

    # ------------------------------------------------------------ handlers
    def command_of(*values):
        try:
            return preview_command(recipe_from_values(values))
        except (RecipeError, ValueError) as e:
            return f"# error: {e}"

    def view(job_id, last):
        """Status, stages, loss, log (and runs when something changed) of the shown job."""
        if not job_id:
            cur = app.current_job()
            if cur is None:
                return ("", "No build yet.", gr.update(), gr.update(), gr.update(), gr.update(), gr.update(),
                        last)
            job_id = cur
        try:
            st = app.job_state(job_id)
        except UIError as e:
            return (job_id, f"⚠ {e}", gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), last)
        key = f"{job_id}:{st.status}:{len(st.lines)}"
        if key == last:  # nothing new: leave the components alone
            return (gr.update(),) * 7 + (last,)
        runs, run_select = gr.update(), gr.update()
        if key.rsplit(":", 1)[0] != last.rsplit(":", 1)[0]:  # another job or status: the runs changed
            all_jobs = app.list_jobs()
            runs = runs_frame(all_jobs)
            run_select = gr.update(choices=[j.job_id for j in all_jobs], value=job_id)
        return (job_id, status_text(job_id, st), stages_html(st), loss_frame(st),
                "\n".join(st.lines[-LOG_LINES:]), runs, run_select, key)

    view_outputs = [tab.job_id, tab.status, tab.stages, tab.plot, tab.log, tab.runs, tab.run_select, last_key]

    def launch(recipe: Recipe) -> str:
        recipe = app.check_recipe(recipe)  # the request policy, before any file is read
        recipe.validate()
        _check_data(app, recipe)
        return app.start(recipe)

    def start(*values):
        try:
            job_id = launch(recipe_from_values(values))
        except (RecipeError, UIError, ValueError, RuntimeError) as e:
            gr.Warning(str(e))
            return gr.update(), f"⚠ cannot start: {e}", ""
        return job_id, f"**{job_id}**: started", ""

    def cancel(job_id):
        try:
            secs = app.cancel(job_id)
        except UIError as e:
            gr.Warning(str(e))
            return f"⚠ {e}"
        return f"**{job_id}**: cancelled in {secs:.1f} s"

    def resume(job_id):
        try:
            app.resume(job_id)
        except (UIError, RuntimeError) as e:
            gr.Warning(str(e))
            return f"⚠ {e}"
        return f"**{job_id}**: resumed"

    def select_run(job_id):
        return job_id or "", ""

    def load_form(job_id):
        try:
            return values_of(app.recipe_of(job_id))
        except Exception as e:
            gr.Warning(f"cannot load the recipe of {job_id!r}: {e}")
            return [gr.update()] * len(form)

    def on_upload(file, fmt, template, base_model, trust):
        if not file:
            return gr.update(), ""
        path = file if isinstance(file, str) else getattr(file, "name", str(file))
        try:
            load_examples(path, fmt or "auto")
        except DataError as e:
            msg = str(e).replace(str(path), Path(path).name)
            gr.Warning("bad data file: " + msg)
            return gr.update(), f"⚠ **bad data file**: {html.escape(msg)}"
        try:
            dest = store_upload(app, path)
        except UIError as e:
            gr.Warning(str(e))
            return gr.update(), f"⚠ {html.escape(str(e))}"
        return str(dest), preview_data(app, str(dest), fmt, template, base_model, trust)

    def check_data(train_file, fmt, template, base_model, trust):
        return preview_data(app, train_file, fmt, template, base_model, trust)

    def build_recipe(overrides: dict) -> dict:
        """Start a build: the default recipe with `overrides` (nested or dotted field names)."""
        try:
            recipe = apply_overrides(overrides or {})
            job_id = launch(recipe)
        except (RecipeError, UIError, ValueError, RuntimeError) as e:
            return {"ok": False, "error": str(e)}
        return {"ok": True, "job_id": job_id, "command": preview_command(recipe)}

    def job_summary(job_id: str) -> dict:
        """State of a job: status, error, result, stages, last steps."""
        try:
            st = app.job_state(job_id)
        except UIError as e:
            return {"job_id": job_id, "status": "unknown", "error": str(e)}
        return {"job_id": job_id, "status": st.status, "error": st.error, "result": st.result,
                "stages": st.stages, "steps": st.steps[-5:], "evals": st.evals[-5:],
                "log_tail": st.lines[-20:]}

    for c in form:
        c.change(command_of, form, tab.command, api_visibility="private", queue=False,
                 trigger_mode="always_last")
    data_inputs = [comps["data_format"], comps["template"], comps["base_model"], comps["trust_remote_code"]]
    upload.upload(on_upload, [upload] + data_inputs, [comps["train_file"], data_preview],
                  api_visibility="private", concurrency_id="ui")
    check.click(check_data, [comps["train_file"]] + data_inputs, data_preview, api_name="preview_data",
                concurrency_id="ui")
    tab.start.click(start, form, [tab.job_id, tab.status, last_key], api_name="start_build",
                    concurrency_id="build", concurrency_limit=1)
    tab.cancel.click(cancel, tab.job_id, tab.status, api_name="cancel_build", concurrency_id="build_ctl")
    tab.resume.click(resume, tab.job_id, tab.status, api_name="resume_build", concurrency_id="build",
                     concurrency_limit=1).then(lambda: "", None, last_key, queue=False,
                                                api_visibility="private")
    tab.run_select.input(select_run, tab.run_select, [tab.job_id, last_key], api_visibility="private",
                         queue=False)
    load_recipe.click(load_form, tab.run_select, form, api_visibility="private", queue=False)
    tab.timer.tick(view, [tab.job_id, last_key], view_outputs, api_visibility="private",
                   concurrency_id="poll", concurrency_limit=None, show_progress="hidden")
    gr.api(build_recipe, api_name="build_recipe", concurrency_id="build", concurrency_limit=1)
    gr.api(job_summary, api_name="job_summary", concurrency_id="poll", concurrency_limit=None)

    def on_load(*values):
        job = app.current_job() or ""
        return (job, "", command_of(*values))
    tab.on_load = (on_load, form, [tab.job_id, last_key, tab.command])
    tab.outputs = view_outputs
    return tab


def _check_data(app: AppEngine, recipe: Recipe) -> None:
    for f in (recipe.train_file, recipe.eval_file):
        if f and f.strip():
            try:
                load_examples(app.ws.resolve_input(f), recipe.data_format)
            except DataError as e:
                raise UIError(f"bad data file: {e}") from None
