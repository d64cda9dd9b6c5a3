"""`.onnx_adapter` files (onnxruntime's adapter format): read their tensors, write them atomically, and
stack two adapters into one for a rows-layout base (pipeline/lora_layout.py). numpy and onnxruntime are
imported only when a file is read or written."""
from __future__ import annotations

import os
from pathlib import Path

ADAPTER_FILE = "adapter.onnx_adapter"
ROWS_DIM = "lora_rows"


def has_rows(lora_inputs: dict) -> bool:
    """True when LoRA inputs ({name: dims}) carry the leading per-row dim (the rows layout)."""
    return bool(lora_inputs) and all(isinstance(d, (list, tuple)) and d and d[0] == ROWS_DIM
                                     for d in lora_inputs.values())


def read_adapter_tensors(path: Path) -> dict[str, tuple]:
    """{name: shape} of an .onnx_adapter file; raises on a truncated or unreadable file."""
    import onnxruntime as ort

    fmt = ort.AdapterFormat.read_adapter(str(path))
    params = fmt.get_parameters()
    return {k: tuple(v.shape()) for k, v in params.items()}


def read_adapter_arrays(path: Path) -> dict:
    """{name: numpy array} of an .onnx_adapter file (copies: the arrays onnxruntime hands out point into
    the AdapterFormat object and are garbage once it is freed)."""
    import numpy as np
    import onnxruntime as ort

    fmt = ort.AdapterFormat.read_adapter(str(path))
    params = fmt.get_parameters()
    out = {k: np.array(v.numpy(), copy=True) for k, v in params.items()}
    del params, fmt
    return out


def write_pair_adapter(file_a: Path | None, file_b: Path | None, out_file: Path) -> dict:
    """One .onnx_adapter for a rows-layout base that gives batch row 0 adapter A and row 1 adapter B
    (None: the base model, a zero LoRA). Each input is the two adapters' [1, ...] tensors stacked on
    the rows axis; ranks that differ are padded with zeros (exact: zero columns of A meet zero rows
    of B). Returns {"tensors", "bytes"}."""
    import numpy as np

    if file_a is None and file_b is None:
        raise ValueError("a pair needs at least one adapter")
    a = read_adapter_arrays(file_a) if file_a else None
    b = read_adapter_arrays(file_b) if file_b else None
    ref = a if a is not None else b
    a = a if a is not None else {k: np.zeros_like(v) for k, v in ref.items()}
    b = b if b is not None else {k: np.zeros_like(v) for k, v in ref.items()}
    if set(a) != set(b):
        raise ValueError("the two adapters set different LoRA inputs")
    stacked = {}
    for k in a:
        x, y = a[k], b[k]
        if x.ndim != 3 or y.ndim != 3 or x.shape[0] != 1 or y.shape[0] != 1:
            raise ValueError(f"{k}: not a rows-layout adapter tensor ({list(x.shape)}, {list(y.shape)})")
        ax = 2 if ".lora_A." in k else 1  # the rank axis: A [1, K, r], B [1, r, N]
        r = max(x.shape[ax], y.shape[ax])
        pads = []
        for t in (x, y):
            w = [(0, 0)] * 3
            w[ax] = (0, r - t.shape[ax])
            pads.append(np.pad(t, w))
        if pads[0].shape != pads[1].shape or pads[0].dtype != pads[1].dtype:
            raise ValueError(f"{k}: shapes/dtypes do not stack: {pads[0].shape} vs {pads[1].shape}")
        stacked[k] = np.concatenate(pads, axis=0)
    write_adapter_file(stacked, out_file)
    return {"tensors": len(stacked), "bytes": Path(out_file).stat().st_size}


def write_adapter_file(arrays: dict, out_file: str | os.PathLike) -> None:
    """{name: numpy array} -> an .onnx_adapter file, written to a temporary name and renamed over
    out_file (a reader never sees half a file)."""
    import numpy as np
    import onnxruntime as ort

    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(1)
    fmt.set_model_version(1)
    fmt.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()})
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(out_file.name + ".tmp")
    fmt.export_adapter(str(tmp))
    os.replace(tmp, out_file)


