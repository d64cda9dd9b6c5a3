"""The Build form as data: the recipe's fields (pipeline.recipe.iter_fields) as Gradio components, in
sections, and the conversions between the form's values and a Recipe (presets filled in, API overrides)."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from artifacts import Workspace
from pipeline.presets import PRESETS, apply_preset
from pipeline.recipe import Recipe, RecipeError, get_dotted, iter_fields, set_dotted

MODE_ADAPTER = "New adapter on a base"
MODE_BASE = "New base from a model"
FIELDS = list(iter_fields())
FIELD_NAMES = [n for n, _, _ in FIELDS]
META = {n: m for n, _, m in FIELDS}
DEFAULTS = {n: d for n, d, _ in FIELDS}
PRESET_FIELDS = sorted({k for values in PRESETS.values() for k in values if k in META})
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
