"""The studio's web app: Chat with a base and its LoRA adapters, Build new adapters, browse the Library.

  python app.py [--host 127.0.0.1] [--port 7860] [--share] [--auth USER:PASS] [--models-dir DIR]

Artifacts live in the workspace ($STUDIO_HOME, default: this folder): models/, adapters/, runs/.
Importing this module (as Hugging Face Spaces does) builds `demo` without launching it."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline.workspace import Workspace  # noqa: E402
from ui.engine import AppEngine  # noqa: E402
from ui.interface import create_ui, launch_kwargs  # noqa: E402

BUILD_CONCURRENCY = 1  # default for handlers without their own limit; chat handlers allow 8


def build_demo(models_dir: str | None = None, adapters_dir: str | None = None, provider: str = "auto"):
    app = AppEngine(Workspace.default(), models_dir=models_dir, adapters_dir=adapters_dir, provider=provider)
    demo = create_ui(app)
    demo.queue(default_concurrency_limit=4, max_size=64)
    demo.app_engine = app
    return demo


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    ap.add_argument("--share", action="store_true", help="create a public gradio.live link")
    ap.add_argument("--auth", help="USER:PASS required to open the app")
    ap.add_argument("--models-dir", help="folder of ONNX bases (default: <workspace>/models)")
    ap.add_argument("--adapters-dir", help="folder of adapters (default: <workspace>/adapters)")
    ap.add_argument("--provider", default="auto", help="execution provider for chat: auto, cpu or cuda")
    args = ap.parse_args(argv)
    auth = None
    if args.auth:
        user, sep, pw = args.auth.partition(":")
        if not sep or not user:
            ap.error("--auth must be USER:PASS")
        auth = (user, pw)
    demo = build_demo(args.models_dir, args.adapters_dir, args.provider)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                show_error=False, **launch_kwargs())
    return 0


if __name__ == "__main__":
    sys.exit(main())
elif os.environ.get("SYSTEM") == "spaces":  # Hugging Face Spaces imports app.py and serves `demo`
    demo = build_demo()
