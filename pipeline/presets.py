"""Model-aware training presets. The values live in recipes/presets.yaml (one place, shared by the shipped
recipes); `resolve_preset` picks one for a recipe ('auto': by the base's size), `apply_preset` sets its
values on a recipe except the fields the user gave explicitly."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from pipeline.recipe import PROJECT_ROOT, Recipe, RecipeError, set_dotted

PRESETS_FILE = PROJECT_ROOT / "recipes" / "presets.yaml"
SMALL_PARAMS = 100_000_000  # below this, 'auto' picks the demo preset


def _load() -> dict[str, dict]:
    data = yaml.safe_load(PRESETS_FILE.read_text())
    return {str(k): dict(v) for k, v in data.items()}


PRESETS: dict[str, dict] = _load()


MAX_HEADER_BYTES = 32 << 20  # a safetensors header (a 3.8 B model's: ~60 kB); more is not a model's
MAX_DIM = 1 << 40


def _small_int(digits: str) -> int:
    return int(digits) if len(digits) <= 15 else -1  # -1: refused as a dimension below


def param_count(model_dir: str | Path) -> int | None:
    """Parameters of a local HF model folder, from its safetensors headers (no weights read); None when there
    are none or one is not a plausible header (a shape must be at most 8 whole numbers below 2**40, so that a
    crafted header of huge numbers cannot cost minutes of big-integer products)."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    n = 0
    try:
        for f in files:
            with open(f, "rb") as fh:
                size = int.from_bytes(fh.read(8), "little")
                if size > MAX_HEADER_BYTES:
                    return None
                header = json.loads(fh.read(size), parse_int=_small_int)  # (no 4,000-digit conversions)
            if not isinstance(header, dict):
                return None
            for key, info in header.items():
                if key == "__metadata__":
                    continue
                shape = info.get("shape") if isinstance(info, dict) else None
                if (not isinstance(shape, list) or len(shape) > 8
                        or not all(type(d) is int and 0 <= d < MAX_DIM for d in shape)):
                    return None
                count = 1
                for d in shape:
                    count *= d
                n += count
    except (OSError, ValueError, RecursionError):
        return None
    return n


def _model_dir_of(recipe: Recipe, models_dir: Path) -> Path | None:
    root = Path(models_dir).parent
    if recipe.base:
        try:
            meta = json.loads((Path(models_dir) / recipe.base / "base.json").read_text())
        except (OSError, ValueError):
            return None
        path = (meta.get("prepared") or {}).get("path") or meta.get("source_model") or ""
        p = Path(path)
        return p if p.is_absolute() else root / p
    if not (recipe.base_model or "").strip():
        return None
    p = Path(recipe.base_model).expanduser()
    for cand in ([p] if p.is_absolute() else [root / p, PROJECT_ROOT / p, Path.cwd() / p]):
        if cand.is_dir():
            return cand
    return None


def resolve_preset(recipe: Recipe, models_dir: str | Path) -> str:
    """The preset a recipe gets: its own, or for 'auto' 'demo' when the base is the embedded default or a
    small model (< 100 M parameters), else '3-4b' (also for a Hub model not downloaded yet)."""
    if recipe.preset != "auto":
        return recipe.preset
    if recipe.base == "default":
        return "demo"
    model_dir = _model_dir_of(recipe, Path(models_dir))
    n = param_count(model_dir) if model_dir is not None else None
    return "demo" if n is not None and n < SMALL_PARAMS else "3-4b"


def apply_preset(recipe: Recipe, name: str, explicit: set[str] | frozenset = frozenset()) -> Recipe:
    """A copy of `recipe` with the preset's values, except the dotted fields in `explicit`; the copy's
    `preset` names the preset applied ('custom': nothing changes)."""
    out = copy.deepcopy(recipe)
    if name == "auto":
        raise RecipeError("apply_preset needs a resolved preset (resolve_preset first)")
    if name != "custom":
        if name not in PRESETS:
            raise RecipeError(f"unknown preset {name!r}; presets: {', '.join(['auto', *PRESETS, 'custom'])}")
        for key, value in PRESETS[name].items():
            if key not in explicit:
                set_dotted(out, key, value)
    out.preset = name
    return out
