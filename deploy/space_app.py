"""Chat-only LoRA studio app (exported by `python -m deploy space`): Chat with the ONNX base in models/
and its adapters in adapters/, plus a read-only Library. Runs on onnxruntime-genai and Gradio only.

  python app.py [--host 127.0.0.1] [--port 7860] [--auth USER:PASS] [--share]

A login is required when --auth or $STUDIO_AUTH (user:pass; a Space secret) is set. Never shares by
default; --share needs credentials (or --share-without-auth, with a warning).
On Hugging Face Spaces, GRADIO_SERVER_NAME/GRADIO_SERVER_PORT come from the environment."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from deploy.launch import add_launch_arguments, launch_options, private_gradio_dir  # noqa: E402
GRADIO_DIR = private_gradio_dir()  # before gradio is imported (below)
from ui.chat_engine import ChatOnlyEngine  # noqa: E402  (the Space's ui/engine.py)
from ui.interface import create_chat_only_ui, serve  # noqa: E402


def build_demo(provider: str | None = None, warning: str | None = None):
    # rooted at $STUDIO_HOME, else this folder (ui.chat_engine.default_root)
    app = ChatOnlyEngine(provider=provider or os.environ.get("STUDIO_PROVIDER", "auto"))
    return create_chat_only_ui(app, warning=warning)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--provider", default=None, help="auto (default), cpu or cuda")
    add_launch_arguments(ap)
    args = ap.parse_args(argv)
    opts = launch_options(args)
    if opts is None:
        return 2
    demo = build_demo(args.provider, warning=opts.warning)
    serve(demo, args.host, args.port, opts, GRADIO_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
