"""Builds and checks the fused LoRA op ahead of the first chat (./run.sh does it when it sets up the GPU set):

  python -m engine.fused_lora [--device cuda|cpu]     (default: cuda when torch sees a GPU)

Prints the library's path and its self-check error; exit 1 with the reason when it cannot be had (the engine
then serves with onnxruntime's MatMul chain)."""
from __future__ import annotations

import argparse
import sys

from . import FusedLoraUnavailable, library, self_check


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.fused_lora")
    ap.add_argument("--device", choices=("cuda", "cpu"))
    a = ap.parse_args(argv)
    device = a.device
    if device is None:
        try:
            import torch
            device = "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            device = "cpu"
    try:
        lib = library(device)
        err = self_check(lib, device)
    except FusedLoraUnavailable as e:
        print(f"fused LoRA op ({device}) not available: {e}", file=sys.stderr)
        return 1
    print(f"fused LoRA op ({device}): {lib} (self-check relative error {err:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
