"""The studio's web app: Chat with a base and its LoRA adapters, Build new adapters, browse the Library,
export and publish (Deploy).

  python app.py [--host 127.0.0.1] [--port 7860] [--auth USER:PASS] [--share] [--chat-only]
                [--models-dir DIR] [--adapters-dir DIR]
                [--allow-data-root DIR] [--allow-model-root DIR] [--allow-remote-code] [--allow-server-token]

Never shares by default. `--share` (a public gradio.live link) needs credentials: `--auth USER:PASS` or
$STUDIO_AUTH=user:pass; without them it is refused unless `--share-without-auth` is given (then a warning
is printed, logged and shown on the page). `--chat-only` serves Chat and a read-only Library without
importing the build pipeline (no torch, transformers or Olive).

Every request is untrusted (artifacts/policy.py, docs/DESIGN.md section Policy): data files only from
<workspace>/uploads/ and data/, base models only Hub ids or models/<name>, exports only exports/<name>/,
no model code run and no server token lent, unless the flags above widen it. Request bodies and uploads
are capped ($STUDIO_MAX_UPLOAD_MB, default 8) and failed logins are slowed per client.

Artifacts live in the workspace ($STUDIO_HOME, default: this folder): models/, adapters/, runs/.
Importing this module (as Hugging Face Spaces does) builds `demo` without launching it."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from artifacts import Policy, Workspace  # noqa: E402
from artifacts.limits import shared_job_defaults  # noqa: E402
from deploy.launch import add_launch_arguments, launch_options, private_gradio_dir  # noqa: E402
GRADIO_DIR = private_gradio_dir()  # before gradio is imported (below)
SHARED_ENV = "STUDIO_SHARED"  # (ui.slots.SHARED_ENV; that module imports gradio)
from ui.interface import create_chat_only_ui, create_ui, serve  # noqa: E402


def build_demo(models_dir: str | None = None, adapters_dir: str | None = None, provider: str = "auto",
               chat_only: bool = False, warning: str | None = None, policy: Policy | None = None):
    if chat_only:  # read-only chat engine: nothing of pipeline/ (nor torch) is imported
        from ui.chat_engine import ChatOnlyEngine
        return create_chat_only_ui(ChatOnlyEngine(models_dir=models_dir, adapters_dir=adapters_dir,
                                                  provider=provider), warning=warning)
    from ui.engine import AppEngine
    ws = Workspace.default()
    return create_ui(AppEngine(ws, models_dir=models_dir, adapters_dir=adapters_dir, provider=provider,
                               policy=policy or Policy(ws)), warning=warning)


def policy_of(args) -> Policy:
    """The operator's widening of the request policy (artifacts.Policy) from the command line."""
    return Policy(Workspace.default(),
                  data_roots=tuple(Path(d).expanduser().resolve() for d in args.allow_data_root or []),
                  model_roots=tuple(Path(d).expanduser().resolve() for d in args.allow_model_root or []),
                  allow_remote_code=bool(args.allow_remote_code), allow_server_token=bool(args.allow_server_token))


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_launch_arguments(ap)
    ap.add_argument("--chat-only", action="store_true",
                    help="serve Chat and a read-only Library only (no Build; the pipeline is not imported)")
    ap.add_argument("--models-dir", help="folder of ONNX bases (default: <workspace>/models)")
    ap.add_argument("--adapters-dir", help="folder of adapters (default: <workspace>/adapters)")
    ap.add_argument("--provider", default="auto", help="execution provider for chat: auto, cpu or cuda")
    ap.add_argument("--allow-data-root", action="append", metavar="DIR",
                    help="also accept data files under DIR from requests (repeatable; default: only "
                         "<workspace>/uploads and <workspace>/data)")
    ap.add_argument("--allow-model-root", action="append", metavar="DIR",
                    help="also accept model folders under DIR as base_model (repeatable; default: Hub ids "
                         "and <workspace>/models/<name>)")
    ap.add_argument("--allow-remote-code", action="store_true",
                    help="let a request set trust_remote_code (runs a model's own Python code in build jobs)")
    ap.add_argument("--allow-server-token", action="store_true",
                    help="let browser requests publish with this server's $HF_TOKEN when no token is typed")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    opts = launch_options(args)
    if opts is None:
        return 2
    if not args.allow_server_token:  # build jobs (subprocesses) download Hub models without the server's token
        os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    if opts.share or opts.auth:  # shared: build jobs get memory and time limits unless the operator set some
        os.environ[SHARED_ENV] = "1"  # (and a request with no known address is not the operator: ui/slots.py)
        said = shared_job_defaults(os.environ)
        if said:
            print("shared app: build jobs are stopped (resumable) beyond " + ", ".join(said)
                  + "; set these variables to change that")
    demo = build_demo(args.models_dir, args.adapters_dir, args.provider, chat_only=args.chat_only,
                      warning=opts.warning, policy=policy_of(args))
    serve(demo, args.host, args.port, opts, GRADIO_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
elif os.environ.get("SYSTEM") == "spaces":  # Hugging Face Spaces imports app.py and serves `demo`
    os.environ[SHARED_ENV] = "1"
    shared_job_defaults(os.environ)
    demo = build_demo()
