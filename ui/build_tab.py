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

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from pipeline.command import preview_command
from pipeline.data import DataError, load_examples
from pipeline.events import JobState
from pipeline.recipe import Recipe, RecipeError, get_dotted
from ui.build_data import check_data, name_placeholder, preview_data, store_upload
from ui.build_form import (FIELD_NAMES, META, MODE_ADAPTER, MODE_BASE, PRESET_FIELDS, SECTIONS, apply_overrides,
                           elem_id, form_values, make_component, preset_recipe, recipe_from_form)
from ui.build_view import (LOG_LINES, LOSS_TITLES, RUNS_SHOWN, job_eval_html, loss_plot, runs_frame, stages_html,
                           status_text)
from ui.engine import AppEngine, NotYours, UIError
from ui.slots import Gate, requester

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
        # slow work never waits in Gradio's queue (64 places for the whole server: a flood of previews or starts
        # filled it and every chat got "Queue is full"); over these it is answered at once (ui/slots.py)
        self.data_gate = Gate("data check", total=2, per_client=1)
        self.build_gate = Gate("build start", total=1)

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
        me = requester()
        if not job_id:
            cur = self.app.current_job(me)
            if cur is None:  # said once: a message shown in the status line (e.g. cannot start) stays
                return ((gr.update(),) * 9) if last == "none" else (("", "No build yet.") + (gr.update(),) * 6
                                                                     + ("none",))
            job_id = cur
        try:
            st = self.app.job_state(job_id, me)
        except NotYours:  # (the running build of another user: the page says so, and shows nothing of it)
            key = f"{job_id}:not-yours"
            if key == last:
                return (gr.update(),) * 8 + (last,)
            running = self.app.running_job() == job_id
            note = "another user's build is running: yours can start when it ends" if running else \
                "another user's build: its log, data and results are theirs"
            mine = self.app.list_jobs(me)
            return (job_id, f"**{job_id}**: {note}", "", gr.update(), "", "", runs_frame(mine),
                    gr.update(choices=[j.job_id for j in mine[:RUNS_SHOWN]], value=None), key)
        except UIError as e:
            return (job_id, f"⚠ {e}") + (gr.update(),) * 6 + (last,)
        key = f"{job_id}:{st.status}:{len(st.lines)}"
        if key == last:  # nothing new: leave the components alone (the running time is in the status line)
            return (gr.update(),) * 8 + (last,)
        runs, run_select = gr.update(), gr.update()
        if key.rsplit(":", 1)[0] != last.rsplit(":", 1)[0]:  # another job or status: the runs changed
            all_jobs = self.app.list_jobs(me)
            runs = runs_frame(all_jobs)
            run_select = gr.update(choices=[j.job_id for j in all_jobs[:RUNS_SHOWN]], value=job_id)
        scrub = self.app.ws.scrub  # job logs quote libraries that name the server's folders
        return (job_id, scrub(status_text(job_id, st)), scrub(stages_html(st)), loss_plot(st),
                scrub("\n".join(st.lines[-LOG_LINES:])), job_eval_html(self.app, st), runs, run_select, key)

    def launch(self, recipe: Recipe) -> str:
        with self.build_gate.enter() as busy:
            if busy:
                raise UIError(busy)
            running = self.app.running_job()  # (said before the data files are read: they may take seconds)
            if running is not None:
                raise UIError(f"job {running} is still running: cancel it or wait until it ends")
            recipe = self.app.check_recipe(recipe, requester())  # the request policy, before any file is read
            recipe.validate()
            check_data(self.app, recipe)
            # who asks (Gradio's request of this event; a handler with *values cannot take it as a parameter)
            return self.app.start(recipe, client=requester())

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
            secs = self.app.cancel(job_id, requester())
        except UIError as e:
            gr.Warning(self.app.ws.scrub(str(e)))
            return f"⚠ {self.app.ws.scrub(str(e))}"
        return f"**{job_id}**: cancelled in {secs:.1f} s"

    def resume(self, job_id):
        try:
            with self.build_gate.enter() as busy:
                if busy:
                    raise UIError(busy)
                self.app.resume(job_id, requester())
        except (UIError, RuntimeError) as e:
            gr.Warning(self.app.ws.scrub(str(e)))
            return f"⚠ {self.app.ws.scrub(str(e))}"
        return f"**{job_id}**: resumed"

    def select_run(self, job_id):
        return job_id or "", ""

    def load_form(self, job_id):
        try:
            return form_values(self.app.recipe_of(job_id, requester()), self.app.default_base(), self.app.ws) + [""]
        except Exception as e:
            gr.Warning(self.app.ws.scrub(f"cannot load the recipe of {job_id!r}: {e}"))
            return [gr.update()] * (1 + len(FIELD_NAMES)) + [gr.update()]

    def on_upload(self, file, fmt, template, base_model, trust, eval_file, eval_fraction, seed,
                  request: gr.Request = None):
        if not file:
            return gr.update(), ""
        with self.data_gate.enter(request) as busy:
            if busy:
                gr.Warning(busy)
                return "", f"⚠ {html.escape(busy)}{NOT_TAKEN}"
            return self._take_upload(file, fmt, template, base_model, trust, eval_file, eval_fraction, seed,
                                     requester(request))

    def _take_upload(self, file, fmt, template, base_model, trust, eval_file, eval_fraction, seed, client=None):
        path = file if isinstance(file, str) else getattr(file, "name", str(file))
        try:
            examples = load_examples(path, fmt or "auto")
        except DataError as e:
            msg = str(e).replace(str(path), Path(path).name)
            gr.Warning("bad data file: " + msg)
            # the training file is emptied: a refused upload must not leave the form's previous file (the demo
            # set by default) in place for Start to build on without a word
            return "", f"⚠ **bad data file**: {html.escape(msg)}{NOT_TAKEN}"
        try:
            dest = store_upload(self.app, path, client)
        except UIError as e:
            gr.Warning(str(e))
            return "", f"⚠ {html.escape(str(e))}{NOT_TAKEN}"
        return dest, preview_data(self.app, dest, fmt, template, base_model, trust, eval_file=eval_file,
                                  eval_fraction=eval_fraction, seed=seed, examples=examples, client=client)

    def check_data(self, train_file, fmt, template, base_model, trust, eval_file="", eval_fraction=0.1, seed=0,
                   request: gr.Request = None):
        with self.data_gate.enter(request) as busy:
            if busy:
                return f"⚠ {html.escape(busy)}"
            return preview_data(self.app, train_file, fmt, template, base_model, trust, eval_file=eval_file,
                                eval_fraction=eval_fraction, seed=seed, client=requester(request))

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
            st = self.app.job_state(job_id, requester())
        except UIError as e:
            return {"job_id": job_id, "status": "unknown", "error": str(e)}
        return self.app.ws.scrub({"job_id": job_id, "status": st.status, "error": st.error, "result": st.result,
                                  "stages": st.stages, "steps": st.steps[-5:], "evals": st.evals[-5:],
                                  "resumed_step": getattr(st, "resumed_step", None),
                                  "eval": getattr(st, "eval", None), "log_tail": st.lines[-20:]})

    def page_state(self):
        """What a freshly loaded page needs: the job to show, the running job's recipe (the browser
        decides whether it goes into the form), the published bases, the derived adapter name."""
        running, me = self.app.running_job(), requester()
        payload = None
        if running:
            try:  # (only the build's own user gets its recipe)
                payload = {"job": running, "values": form_values(self.app.recipe_of(running, me),
                                                                 self.app.default_base(), self.app.ws)}
            except (UIError, RecipeError, OSError):
                payload = None
        return running or self.app.current_job(me) or "", "", payload, gr.update(choices=self.app.base_names())

    def job_recipe(self, job_id: str) -> dict:
        """The recipe of a job, as the form shows it: {"mode", "fields": {dotted name: value}}."""
        try:
            values = form_values(self.app.recipe_of(job_id, requester()), self.app.default_base(), self.app.ws)
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
                upload = gr.File(label="Upload a training set (JSONL, or a JSON array)", file_types=[".jsonl", ".json"],
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
                # (the page as built is the same for everyone: no runs; the page's load fills in the client's)
                tab.runs = gr.Dataframe(runs_frame([]), interactive=False, elem_id="build-runs",
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
    # data checks apart from "ui" (four at once there took 4.7 GB and held the pickers up), and never waiting in the
    # queue: BuildService.data_gate answers what is over its bounds at once
    upload.upload(svc.on_upload, [upload] + data_inputs, [comps["train_file"], data_preview],
                  api_visibility="private", concurrency_id="data", concurrency_limit=None)
    check.click(svc.check_data, [comps["train_file"]] + data_inputs, data_preview, api_name="preview_data",
                concurrency_id="data", concurrency_limit=None)
    # (the status line shows no Gradio progress text: "processing | 0.1/0.1s" stayed in it)
    tab.start.click(svc.start, form, [tab.job_id, tab.status, last_key], api_name="start_build",
                    concurrency_id="build", concurrency_limit=None, show_progress="hidden")
    tab.cancel.click(svc.cancel, tab.job_id, tab.status, api_name="cancel_build", concurrency_id="build_ctl",
                     show_progress="hidden")
    tab.resume.click(svc.resume, tab.job_id, tab.status, api_name="resume_build", concurrency_id="build",
                     concurrency_limit=None, show_progress="hidden").then(lambda: "", None, last_key, queue=False,
                                                api_visibility="private")
    tab.run_select.input(svc.select_run, tab.run_select, [tab.job_id, last_key], api_visibility="private",
                         queue=False)
    load_recipe.click(svc.load_form, tab.run_select, form + [restore_note], api_visibility="private", queue=False)
    tab.timer.tick(svc.view, [tab.job_id, last_key], view_outputs, api_visibility="private",
                   concurrency_id="poll", concurrency_limit=None, show_progress="hidden")
    gr.api(svc.build_recipe, api_name="build_recipe", concurrency_id="build", concurrency_limit=None)
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
