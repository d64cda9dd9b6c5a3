"""The build recipe: one dataclass that is the single source of truth for the UI form, the CLI and
the saved run (YAML or JSON).

Every field carries its help text, choices and bounds in `field(metadata=...)`; the Build tab and
`python -m pipeline build --help` are generated from them, and `validate()` checks them.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from artifacts import BASE_VARIANT, NAME_RULE, PROJECT_ROOT, safe_name, skeleton
from artifacts.limits import unicode_problem
from pipeline.data import FORMATS

DEFAULT_BASE = "models/default-hf"
DEFAULT_ONNX_BASE = "default"
PRESET_CHOICES = ["auto", "demo", "3-4b", "custom"]
GENERIC_STEMS = {"train", "training", "data", "dataset", "datasets", "examples", "all", "sft", "chat"}


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the field and the problem."""


def opt(default, help: str, *, choices=None, lo=None, hi=None, label=None):
    meta = {"help": help, "choices": choices, "min": lo, "max": hi, "label": label}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class AWQConfig:
    enabled: bool = opt(True, "Apply AWQ activation-aware scaling and clipping (4-bit) before fine-tuning, "
                              "so the LoRA is trained against the weights that will be served.")
    device: str = opt("auto", "Where AWQ runs. 'auto': CUDA when present, otherwise skipped with a "
                              "note in the log (on CPU it takes minutes even for tiny models).",
                      choices=["auto", "cuda", "cpu"])
    w_bit: int = opt(4, "Weight bits.", choices=[4])
    group_size: int = opt(128, "Quantization group size (AWQ q_group_size).", choices=[32, 64, 128])
    calib_samples: int = opt(64, "Calibration texts drawn from your own training set.", lo=1, hi=4096)
    calib_seq_len: int = opt(256, "Tokens per calibration text.", lo=16, hi=8192)


@dataclass
class LoRAConfig:
    r: int = opt(16, "LoRA rank.", lo=1, hi=512)
    alpha: int = opt(32, "LoRA alpha (scale = alpha / r).", lo=1, hi=4096)
    dropout: float = opt(0.05, "LoRA dropout.", lo=0.0, hi=0.9)
    target_modules: list = opt(["auto"],
                               "Linear modules that get a LoRA: 'auto' (the model's attention projections: "
                               "qkv_proj,o_proj for Phi3, q_proj,k_proj,v_proj,o_proj for Llama/Qwen2) or "
                               "names as in the model, e.g. q_proj,v_proj. Attention projections only: the "
                               "ONNX LoRA slots exist for q/k/v/o.")
    max_steps: int = opt(100, "Optimizer steps.", lo=1, hi=100000)
    learning_rate: float = opt(2e-4, "Learning rate.", lo=1e-7, hi=0.1)
    batch_size: int = opt(8, "Per-device batch size.", lo=1, hi=1024)
    max_seq_len: int = opt(512, "Longest training sequence in tokens (longer examples are cut).",
                           lo=16, hi=32768)
    eval_steps: int = opt(25, "Held-out loss every N steps.", lo=1, hi=100000)
    save_steps: int = opt(50, "Checkpoint every N steps (and on cancel): resume continues from the last one.",
                          lo=1, hi=100000)
    seed: int = opt(0, "Random seed.", lo=0, hi=2**31 - 1)


@dataclass
class OnnxConfig:
    precision: str = opt("int4", "Weights of the ONNX model. LoRA slots always stay in float.",
                         choices=["int4", "fp16", "fp32"])
    block_size: int = opt(128, "int4 block size.", choices=[16, 32, 64, 128, 256])
    accuracy_level: int = opt(4, "int4 MatMulNBits accuracy level (4 = int8 activations on CPU, "
                                 "0 = float).", choices=[0, 1, 2, 3, 4])
    symmetric: bool = opt(False, "int4 without zero points. Off: asymmetric, the AWQ scheme. On, with block_size "
                                 "32: the weights onnxruntime's fpA_intB CUDA kernels take (the engine then uses "
                                 "them by itself), which scale better over batched rows (bench/NOTES.md).")
    execution_provider: str = opt("auto", "Execution provider the model is built for ('auto': cuda when "
                                          "a GPU is present, else cpu).", choices=["auto", "cuda", "cpu"])


@dataclass
class Recipe:
    base: str = opt(DEFAULT_ONNX_BASE, "Published ONNX base (models/<base>) the adapter is built onto: it trains "
                                       "on exactly that base's prepared weights and skips AWQ and the ONNX "
                                       "build. Empty: build a NEW base from base_model.")
    base_model: str = opt(DEFAULT_BASE, "Model of a new base (when base is empty): a Hugging Face Hub id or a "
                                        "local folder.")
    preset: str = opt("auto", "Training settings preset: 'auto' (by model size: 'demo' for the embedded "
                              "default and other small models, '3-4b' otherwise), 'demo', '3-4b', or "
                              "'custom' (the values as given).", choices=PRESET_CHOICES)
    train_file: str = opt("data/travel/train.jsonl", "Training data (JSONL).")
    eval_file: str = opt("", "Held-out data (JSONL); empty: a seeded held-out split carved from the "
                             "training data (eval_fraction).")
    eval_fraction: float = opt(0.1, "Share of the training data held out when no eval_file is given (at "
                                    "least 20 examples when the set has 40 or more).", lo=0.0, hi=0.5)
    data_format: str = opt("auto", "'prompt' ({prompt, response}), 'messages' (chat), 'alpaca' ({instruction, "
                                   "input, output}), 'sharegpt' ({conversations: [{from, value}]}) or 'auto' "
                                   "(detected from the first example). JSON Lines or one JSON array.",
                           choices=list(FORMATS))
    template: str = opt("", "Text template with {prompt} and {response}; empty: the model's own chat "
                            "template.")
    adapter_name: str = opt("", "Name of the adapter folder in adapters/ (letters, digits, . _ -); empty: "
                                "derived from the training file's name, unique.")
    replace: bool = opt(False, "Replace an existing adapter of that name (the old one is kept as "
                               "<name>.previous until the next successful build of that name).")
    base_name: str = opt("", "Name of a NEW ONNX base in models/ (empty: derived from the base model).")
    trust_remote_code: bool = opt(False, "Allow the model's own Python code (only for models you trust).")
    awq: AWQConfig = field(default_factory=AWQConfig, metadata={"help": "AWQ preparation"})
    lora: LoRAConfig = field(default_factory=LoRAConfig, metadata={"help": "LoRA fine-tuning"})
    onnx: OnnxConfig = field(default_factory=OnnxConfig, metadata={"help": "ONNX model"})

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        return _build(cls, d, "")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=2) if path.suffix == ".json" else self.to_yaml()
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        if not path.is_file():
            raise RecipeError(f"recipe file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
        except yaml.YAMLError as e:
            raise RecipeError(f"{path}: not valid YAML/JSON ({e.__class__.__name__}: {e})") from None
        if not isinstance(data, dict):
            raise RecipeError(f"{path}: the recipe must be a mapping of fields, got {type(data).__name__}")
        return cls.from_dict(data)

    # ---- checks that need no model or data ----------------------------------------------------
    def validate(self) -> "Recipe":
        _check_bounds(self, "")
        if self.adapter_name and not safe_name(self.adapter_name):
            raise RecipeError(f"adapter_name {self.adapter_name!r} is not a safe folder name: use {NAME_RULE}")
        if self.adapter_name and skeleton(self.adapter_name) == skeleton(BASE_VARIANT):
            raise RecipeError(f"adapter_name {self.adapter_name!r} is reserved: the pickers call the base model "
                              f"without an adapter '{BASE_VARIANT}'")
        if self.base_name and not safe_name(self.base_name):
            raise RecipeError(f"base_name {self.base_name!r} is not a safe folder name: use {NAME_RULE}")
        if self.base and not safe_name(self.base):
            raise RecipeError(f"base {self.base!r} is not a safe folder name: use {NAME_RULE}")
        if not self.base and not self.base_model.strip():
            raise RecipeError("base_model is empty: give a Hub id or a local folder")
        if not self.train_file.strip():
            raise RecipeError("train_file is empty")
        if self.template:
            from pipeline.data import check_template
            check_template(self.template)
        if not self.lora.target_modules:
            raise RecipeError("lora.target_modules is empty")
        return self

    def resolve(self, path: str) -> Path:
        """A path from the recipe, relative paths taken from the project root."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else PROJECT_ROOT / p


# ---- helpers ---------------------------------------------------------------------------------
QLORA_GONE = ("QLoRA is not supported: the adapter is served in the float LoRA slots of the int4 ONNX model "
              "and trains on that model's prepared float weights; remove lora.qlora from the recipe "
              "(plain LoRA)")


def _build(cls, d: dict, prefix: str):
    known = {f.name: f for f in fields(cls)}
    if cls is LoRAConfig and "qlora" in d:  # recipes written before QLoRA was taken out
        d = dict(d)
        if _coerce(d.pop("qlora"), False, "lora.qlora"):
            raise RecipeError(QLORA_GONE)
    extra = sorted(set(d) - set(known))
    if extra:
        raise RecipeError(f"unknown key(s) {', '.join(prefix + k for k in extra)}; known: "
                          f"{', '.join(prefix + k for k in known)}")
    kwargs = {}
    for name, value in d.items():
        f = known[name]
        default = cls.__dataclass_fields__[name]
        if dataclasses.is_dataclass(f.type if not isinstance(f.type, str) else _NESTED.get(f.type)):
            sub = _NESTED[f.type] if isinstance(f.type, str) else f.type
            if not isinstance(value, dict):
                raise RecipeError(f"{prefix}{name} must be a mapping")
            kwargs[name] = _build(sub, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, _default_of(default), prefix + name)
    return cls(**kwargs)


_NESTED = {"AWQConfig": AWQConfig, "LoRAConfig": LoRAConfig, "OnnxConfig": OnnxConfig}


def _default_of(f):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()


def _coerce(value: Any, default: Any, name: str):
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise RecipeError(f"{name} must be true or false, got {value!r}")
    if kind is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RecipeError(f"{name} must be a list of names, got {value!r}")
        for v in value:
            _valid_text(v, name)
        return value
    if kind in (int, float):
        if isinstance(value, bool):
            raise RecipeError(f"{name} must be a number, got {value!r}")
        try:
            num = kind(value)
            finite = math.isfinite(num)
            whole = kind is not int or float(value) == num
        except (TypeError, ValueError):
            raise RecipeError(f"{name} must be a number, got {str(value)[:40]!r}") from None
        except OverflowError:  # (a 400-digit integer: no float holds it; int(inf))
            raise RecipeError(f"{name} must be a finite number of a sensible size, got {str(value)[:20]}...") from None
        if not finite:
            raise RecipeError(f"{name} must be a finite number, got {value!r}")
        if not whole:
            raise RecipeError(f"{name} must be a whole number, got {value!r}")
        return num
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecipeError(f"{name} must be text, got {value!r}")
    return _valid_text(value, name)


def _valid_text(value: str, name: str) -> str:
    why = unicode_problem(value)
    if why:
        raise RecipeError(f"{name} {why}")
    return value


def _check_bounds(obj, prefix: str):
    for f in fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_bounds(value, f"{prefix}{f.name}.")
            continue
        m = f.metadata
        name = prefix + f.name
        if m.get("choices") is not None and value not in m["choices"]:
            raise RecipeError(f"{name} = {value!r} is not one of {m['choices']}")
        if m.get("min") is not None and value < m["min"]:
            raise RecipeError(f"{name} = {value!r} is below the minimum {m['min']}")
        if m.get("max") is not None and value > m["max"]:
            raise RecipeError(f"{name} = {value!r} is above the maximum {m['max']}")


def default_adapter_name(train_file: str, adapters_dir: str | Path) -> str:
    """A free adapter name derived from the training file: its stem (an upload's content hash cut off),
    or for generic stems (train.jsonl, data.jsonl ...) its folder's name; '-2', '-3' ... when
    adapters/<name> or adapters/<name>.previous exists."""
    p = Path(train_file or "adapter")
    stem = p.stem
    if p.parent.name == "uploads":
        stem = re.sub(r"-[0-9a-f]{10}$", "", stem)
    elif stem.lower() in GENERIC_STEMS and p.parent.name not in ("", ".", "data"):
        stem = p.parent.name
    name = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", stem))[:56].strip("-._")
    if not safe_name(name) or name.lower() in GENERIC_STEMS:
        name = "adapter"
    adapters_dir = Path(adapters_dir)
    try:  # names that look alike in a picker (artifacts.names.skeleton): 'Pirate.jsonl' never gives 'Pirate'
        looks = {skeleton(e.name) for e in os.scandir(adapters_dir)}
    except OSError:
        looks = set()
    looks.add(skeleton(BASE_VARIANT))
    candidate, n = name, 1
    while ((adapters_dir / candidate).exists() or (adapters_dir / f"{candidate}.previous").exists()
           or skeleton(candidate) in looks):
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def dotted_keys(d: dict, prefix: str = "") -> set[str]:
    """The dotted field names a recipe mapping (a YAML file's content) gives explicitly."""
    out = set()
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out |= dotted_keys(v, f"{prefix}{k}.")
        else:
            out.add(prefix + k)
    return out


def iter_fields(cls=Recipe, prefix: str = ""):
    """(dotted name, default, metadata) for every leaf field: drives the CLI and the UI form."""
    for f in fields(cls):
        sub = _NESTED.get(f.type) if isinstance(f.type, str) else f.type
        if sub is not None and dataclasses.is_dataclass(sub):
            yield from iter_fields(sub, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, _default_of(f), dict(f.metadata)


def set_dotted(recipe: Recipe, dotted: str, value: Any) -> None:
    if dotted == "lora.qlora":  # taken out: asking for it is refused, 'false' changes nothing
        if _coerce(value, False, dotted):
            raise RecipeError(QLORA_GONE)
        return
    *path, last = dotted.split(".")
    obj = recipe
    try:
        for p in path:
            obj = getattr(obj, p)
        f = obj.__dataclass_fields__[last]
    except (AttributeError, KeyError):
        raise RecipeError(f"unknown recipe field {dotted!r}") from None
    setattr(obj, last, _coerce(value, _default_of(f), dotted))


def get_dotted(recipe: Recipe, dotted: str) -> Any:
    obj = recipe
    for p in dotted.split("."):
        obj = getattr(obj, p)
    return obj
