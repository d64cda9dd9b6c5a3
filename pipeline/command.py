"""The command line equivalent to a recipe (shown by the Build tab and `build --print-command`)."""
from __future__ import annotations

import shlex

from pipeline.recipe import Recipe, get_dotted, iter_fields


def preview_command(recipe: Recipe, recipe_file: str | None = None) -> str:
    """`python -m pipeline build ...` with only the fields that differ from the defaults; with a concrete
    preset (demo, 3-4b), from the defaults with that preset applied (`--preset demo` brings those)."""
    from pipeline.presets import PRESETS, apply_preset
    default = Recipe()
    if recipe.preset in PRESETS:
        default = apply_preset(default, recipe.preset)
    parts = ["python", "-m", "pipeline", "build"] + ([recipe_file] if recipe_file else [])
    for name, _, _ in iter_fields():
        value = get_dotted(recipe, name)
        if value != get_dotted(default, name) or (name == "preset" and value != "auto"):
            if isinstance(value, bool):
                parts += [f"--{name}"] if value else [f"--{name}", "false"]
            else:
                parts += [f"--{name}", ",".join(value) if isinstance(value, list) else str(value)]
    return shlex.join(parts)


def preset_lines(recipe: Recipe) -> str:
    """The preset a recipe uses and the values it brings (the CLI prints it before a build)."""
    from pipeline.presets import PRESETS
    if recipe.preset not in PRESETS:
        return f"preset {recipe.preset}: the values as given"
    vals = ", ".join(f"{k.split('.', 1)[-1]}={get_dotted(recipe, k)}" for k in PRESETS[recipe.preset])
    return f"preset {recipe.preset}: {vals}"
