"""The build recipe: one dataclass that is the single source of truth for the UI form, the CLI and
the saved run (YAML or JSON).

Every field carries its help text, choices and bounds in `field(metadata=...)`; the Build tab and
`python -m pipeline build --help` are generated from them, and `validate()` checks them.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from artifacts import NAME_RULE, PROJECT_ROOT, safe_name

DEFAULT_BASE = "models/default-hf"


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
    learning_rate: float = opt(2e-4, "Learning rate.", lo=1e-7, hi=1.0)
    batch_size: int = opt(8, "Per-device batch size.", lo=1, hi=1024)
    max_seq_len: int = opt(512, "Longest training sequence in tokens (longer examples are cut).",
                           lo=16, hi=32768)
    qlora: bool = opt(False, "Train on a 4-bit bitsandbytes copy of the base (QLoRA, CUDA only).")
    eval_steps: int = opt(25, "Held-out loss every N steps (when an eval file is given).", lo=1, hi=100000)
    seed: int = opt(0, "Random seed.", lo=0, hi=2**31 - 1)


@dataclass
class OnnxConfig:
    precision: str = opt("int4", "Weights of the ONNX model. LoRA slots always stay in float.",
                         choices=["int4", "fp16", "fp32"])
    block_size: int = opt(128, "int4 block size.", choices=[16, 32, 64, 128, 256])
    accuracy_level: int = opt(4, "int4 MatMulNBits accuracy level (4 = int8 activations on CPU, "
                                 "0 = float).", choices=[0, 1, 2, 3, 4])
    execution_provider: str = opt("auto", "Execution provider the model is built for ('auto': cuda when "
                                          "a GPU is present, else cpu).", choices=["auto", "cuda", "cpu"])


@dataclass
class Recipe:
    base_model: str = opt(DEFAULT_BASE, "Base model: a Hugging Face Hub id or a local folder.")
    train_file: str = opt("data/travel/train.jsonl", "Training data (JSONL).")
    eval_file: str = opt("data/travel/test.jsonl", "Held-out data (JSONL), optional (empty: none).")
    data_format: str = opt("auto", "'prompt' ({prompt, response} lines), 'messages' (chat lines) or "
                                   "'auto' (detected from the first line).",
                           choices=["auto", "prompt", "messages"])
    template: str = opt("", "Text template with {prompt} and {response}; empty: the model's own chat "
                            "template.")
    adapter_name: str = opt("travel", "Name of the adapter folder in adapters/ (letters, digits, . _ -).")
    base_name: str = opt("", "Name of the ONNX base in models/ (empty: derived from the base model).")
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
        if not safe_name(self.adapter_name):
            raise RecipeError(f"adapter_name {self.adapter_name!r} is not a safe folder name: use {NAME_RULE}")
        if self.base_name and not safe_name(self.base_name):
            raise RecipeError(f"base_name {self.base_name!r} is not a safe folder name: use {NAME_RULE}")
        if not self.base_model.strip():
            raise RecipeError("base_model is empty: give a Hub id or a local folder")
        if not self.train_file.strip():
            raise RecipeError("train_file is empty")
        if self.template:
            from pipeline.data import check_template
            check_template(self.template)
        if not self.lora.target_modules:
            raise RecipeError("lora.target_modules is empty")
        if self.lora.qlora and self.awq.enabled:
            raise RecipeError("lora.qlora and awq.enabled exclude each other: QLoRA trains on its own "
                              "4-bit copy, AWQ prepares float weights for the int4 ONNX model")
        return self

    def resolve(self, path: str) -> Path:
        """A path from the recipe, relative paths taken from the project root."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else PROJECT_ROOT / p


# ---- helpers ---------------------------------------------------------------------------------
def _build(cls, d: dict, prefix: str):
    known = {f.name: f for f in fields(cls)}
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
        return value
    if kind in (int, float):
        if isinstance(value, bool):
            raise RecipeError(f"{name} must be a number, got {value!r}")
        try:
            num = kind(value)
        except (TypeError, ValueError):
            raise RecipeError(f"{name} must be a number, got {value!r}") from None
        if kind is int and float(value) != num:
            raise RecipeError(f"{name} must be a whole number, got {value!r}")
        return num
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecipeError(f"{name} must be text, got {value!r}")
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


def iter_fields(cls=Recipe, prefix: str = ""):
    """(dotted name, default, metadata) for every leaf field: drives the CLI and the UI form."""
    for f in fields(cls):
        sub = _NESTED.get(f.type) if isinstance(f.type, str) else f.type
        if sub is not None and dataclasses.is_dataclass(sub):
            yield from iter_fields(sub, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, _default_of(f), dict(f.metadata)


def set_dotted(recipe: Recipe, dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    obj = recipe
    for p in path:
        obj = getattr(obj, p)
    f = obj.__dataclass_fields__[last]
    setattr(obj, last, _coerce(value, _default_of(f), dotted))


def get_dotted(recipe: Recipe, dotted: str) -> Any:
    obj = recipe
    for p in dotted.split("."):
        obj = getattr(obj, p)
    return obj
