"""python -m deploy space | push: export a chat-only Hugging Face Space, upload a Space or a model repo.

  python -m deploy space --out DIR [--base default] [--adapters travel,pirate] [--hardware cpu-basic]
  python -m deploy push --space OWNER/NAME --folder DIR [--public] [--exist-ok]
  python -m deploy push --space OWNER/NAME [--base default] [--adapters ...] [--hardware ...]  (exports first)
  python -m deploy push --model OWNER/NAME [--base default] [--adapters travel,pirate] [--public]

New repositories are private unless --public is given. --folder must be a folder `deploy space` wrote
(it holds the export marker); --force replaces only such a folder.

The token comes from $HF_TOKEN (never from the command line, so it stays out of shell history and
process lists); it is never printed, logged or written anywhere."""
from __future__ import annotations

import argparse
import os
import sys


def _adapters(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [a.strip() for a in value.split(",") if a.strip()]


def main(argv=None) -> int:
    from deploy.space import HARDWARE, ExportError, export_space
    ap = argparse.ArgumentParser(prog="python -m deploy", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--base", default="default", help="ONNX base in models/ (default: default)")
        p.add_argument("--adapters", default=None,
                       help="comma-separated adapters (default: every adapter that fits the base; '' = none)")
        p.add_argument("--models-dir", help="folder of ONNX bases (default: <workspace>/models)")
        p.add_argument("--adapters-dir", help="folder of adapters (default: <workspace>/adapters)")

    sp = sub.add_parser("space", help="export a chat-only Space folder")
    sp.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    common(sp)
    sp.add_argument("--hardware", default="cpu-basic", choices=HARDWARE, metavar="HARDWARE",
                    help="suggested Space hardware: " + ", ".join(HARDWARE))
    sp.add_argument("--title", help="Space title")
    sp.add_argument("--force", action="store_true", help="replace a previous export in the output folder")

    pp = sub.add_parser("push", help="upload a Space or a model repository to the Hugging Face Hub")
    kind = pp.add_mutually_exclusive_group(required=True)
    kind.add_argument("--space", metavar="REPO_ID", help="push an exported Space (repo type space, sdk gradio)")
    kind.add_argument("--model", metavar="REPO_ID", help="push the ONNX base, adapters and PEFT folders")
    pp.add_argument("--folder", help="with --space: an exported Space folder (default: export one now)")
    common(pp)
    pp.add_argument("--hardware", default="cpu-basic", choices=HARDWARE, metavar="HARDWARE")
    vis = pp.add_mutually_exclusive_group()
    vis.add_argument("--private", dest="public", action="store_false", help="create a private repository (the default)")
    vis.add_argument("--public", dest="public", action="store_true", help="create a public repository")
    pp.set_defaults(public=False)
    pp.add_argument("--exist-ok", action="store_true", help="push into the repository if it already exists")

    args = ap.parse_args(argv)
    adapters = _adapters(args.adapters)
    try:
        if args.cmd == "space":
            r = export_space(args.out, args.base, adapters, args.hardware, args.models_dir, args.adapters_dir,
                             title=args.title, force=args.force, log=print)
            print(r.out)
            return 0
        from deploy.push import PushError, export_and_push_space, push_model, push_space, token_from_env
        try:
            token = token_from_env(os.environ)
            if args.space and args.folder:
                url = push_space(args.folder, args.space, token, private=not args.public, exist_ok=args.exist_ok,
                                 log=print)
            elif args.space:
                url = export_and_push_space(args.space, token, args.base, adapters, args.hardware, args.models_dir,
                                            args.adapters_dir, private=not args.public, exist_ok=args.exist_ok,
                                            log=print)
            else:
                url = push_model(args.model, token, args.base, adapters, args.models_dir, args.adapters_dir,
                                 private=not args.public, exist_ok=args.exist_ok, log=print)
        except PushError as e:
            print(f"push failed: {e}", file=sys.stderr)
            return 1
        print(url)
        return 0
    except ExportError as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
