"""Command line of the build pipeline.

  python -m pipeline build [RECIPE.yaml] [--lora.r 8 --adapter_name pirate ...]   build and follow
  python -m pipeline init recipe.yaml                                          write the default recipe
  python -m pipeline jobs | status JOB | cancel JOB | resume JOB
  python -m pipeline olive-config [RECIPE.yaml] -o olive.json                 the Olive part as a workflow

Every recipe field is also an option (`--help` lists them with their meaning); options override the file.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import yaml

from pipeline.command import preset_lines, preview_command
from pipeline.recipe import Recipe, RecipeError, dotted_keys, iter_fields, set_dotted

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


def _add_recipe_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("recipe fields (override the file)")
    for name, default, meta in iter_fields():
        extra = []
        if meta.get("choices"):
            extra.append(f"one of {meta['choices']}")
        if meta.get("min") is not None:
            extra.append(f"{meta['min']}..{meta['max']}")
        shown = ",".join(default) if isinstance(default, list) else default
        flag = {"nargs": "?", "const": "true"} if isinstance(default, bool) else {}  # --replace = --replace true
        g.add_argument(f"--{name}", dest=f"f:{name}", default=None, metavar="V", **flag,
                       help=f"{meta['help']} [{'; '.join(extra + [f'default: {shown!r}'])}]")
    g.add_argument("--lora.qlora", dest="f:lora.qlora", default=None, nargs="?", const="true",
                   help=argparse.SUPPRESS)  # taken out: refused with a message (recipe.QLORA_GONE)


def recipe_from_args(args) -> tuple[Recipe, set[str]]:
    """The recipe of the file and options, and the dotted fields they give explicitly."""
    recipe = Recipe.load(args.recipe) if getattr(args, "recipe", None) else Recipe()
    explicit = dotted_keys(yaml.safe_load(Path(args.recipe).read_text())) if getattr(args, "recipe", None) \
        else set()
    for key, value in vars(args).items():
        if key.startswith("f:") and value is not None:
            set_dotted(recipe, key[2:], value)
            explicit.add(key[2:])
    return recipe.validate(), explicit


def with_preset(recipe: Recipe, explicit: set[str]) -> Recipe:
    """The recipe with its preset applied ('auto' resolved by the base's size)."""
    from pipeline.presets import apply_preset, resolve_preset
    from artifacts import Workspace
    return apply_preset(recipe, resolve_preset(recipe, Workspace.default().models), explicit).validate()


def follow(job_dir: Path, quiet: bool = False) -> int:
    """Prints the job's events until it ends; Ctrl-C cancels the job."""
    from pipeline import jobs
    from pipeline.events import format_event, read_events
    offset = 0
    interrupted = False

    def on_int(signum, frame):
        nonlocal interrupted
        interrupted = True

    old = signal.signal(signal.SIGINT, on_int)
    try:
        while True:
            events, offset = read_events(job_dir / "events.jsonl", offset)
            for e in events:
                if not quiet or e["type"] in ("job_end", "stage_end", "stage_skip"):
                    print(format_event(e), flush=True)
            if interrupted:
                print("cancelling ...", flush=True)
                s = jobs.cancel(job_dir)
                print(f"cancelled in {s:.1f} s; resume with: python -m pipeline resume {job_dir.name}")
                return EXIT_CANCELLED
            if not jobs.is_running(job_dir):
                events, offset = read_events(job_dir / "events.jsonl", offset)
                for e in events:
                    print(format_event(e), flush=True)
                st = jobs.state(job_dir)
                if st.status == "ok":
                    return EXIT_OK
                if st.status == "interrupted":
                    print(f"error: {st.error}", file=sys.stderr)
                return EXIT_CANCELLED if st.status == "cancelled" else EXIT_FAILED
            time.sleep(0.2)
    finally:
        signal.signal(signal.SIGINT, old)


def export_olive_config(recipe: Recipe, output: Path) -> int:
    """Writes the Olive part of the recipe (the LoRA pass, with its data rendered through the chat
    template into JSONL files beside the config) as a workflow that `olive run --config` accepts.
    AWQ and the ONNX export are not in it: Olive 0.13's AWQ pass cannot take local calibration data
    and its ModelBuilder pass does not work with onnxruntime-genai 0.18 (see the stage files)."""
    import json

    from transformers import AutoTokenizer

    from pipeline import data, hub
    from pipeline.stage_finetune import olive_config
    from artifacts import Workspace
    ws = Workspace.default()
    if recipe.base:
        from pipeline.stage_prepare import prepared_weights
        model_dir = prepared_weights(ws, recipe.base)[1]
    else:
        model_dir = hub.resolve_model(recipe.base_model, project_root=ws.root)
    recipe.lora.target_modules = data.resolve_target_modules(model_dir, recipe.lora.target_modules)
    tok = AutoTokenizer.from_pretrained(model_dir)
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    files = {}
    for key, path in (("train", recipe.train_file), ("eval", recipe.eval_file)):
        if path:
            rows = data.load_examples(ws.resolve_input(path), recipe.data_format)
            files[key] = output.with_suffix(f".{key}.jsonl")
            data.write_texts(files[key], [data.render_text(ex, tok, recipe.template) for ex in rows])
    try:
        import torch
        cuda = torch.cuda.is_available()
    except Exception:
        cuda = False
    cfg = olive_config(model_dir, files["train"], files.get("eval"), recipe.lora,
                       output.parent / (output.stem + "-out"), cuda)
    output.write_text(json.dumps(cfg, indent=2))
    print(f"wrote {output}: run the fine-tuning with `olive run --config {output}`")
    return EXIT_OK


def _job_dir(ref: str) -> Path:
    from artifacts import Workspace
    p = Path(ref)
    if (p / "recipe.yaml").exists():
        return p
    p = Workspace.default().runs / ref
    if (p / "recipe.yaml").exists():
        return p
    raise RecipeError(f"no job {ref!r} (see: python -m pipeline jobs)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="run a recipe: AWQ -> LoRA -> int4 ONNX -> .onnx_adapter",
                       description="Runs the recipe as a job (runs/<job_id>/) and follows its log. "
                                   "Ctrl-C cancels; `resume` continues from the last finished stage.")
    b.add_argument("recipe", nargs="?", help="recipe YAML/JSON (default: the built-in default recipe)")
    b.add_argument("--detach", action="store_true", help="start the job and return")
    b.add_argument("--quiet", action="store_true", help="print only stage and job results")
    b.add_argument("--print-command", action="store_true", help="print the equivalent command and exit")
    _add_recipe_options(b)
    i = sub.add_parser("init", help="write the default recipe to a file")
    i.add_argument("path")
    _add_recipe_options(i)
    sub.add_parser("jobs", help="list jobs")
    for name, text in (("status", "show a job's state"), ("cancel", "cancel a running job"),
                       ("resume", "resume a cancelled, failed or killed job")):
        s = sub.add_parser(name, help=text)
        s.add_argument("job", help="job id or folder")
    o = sub.add_parser("olive-config", help="export the Olive part of a recipe as an Olive workflow JSON")
    o.add_argument("recipe", nargs="?")
    o.add_argument("-o", "--output", required=True)
    _add_recipe_options(o)
    r = sub.add_parser("_run-job", help=argparse.SUPPRESS)
    r.add_argument("job_dir")
    args = ap.parse_args(argv)

    from pipeline import jobs
    from pipeline.data import DataError
    try:
        if args.cmd == "_run-job":
            from pipeline.runner import JobRunner
            code = JobRunner(Path(args.job_dir)).run()
            # Everything is on disk (events fsynced, artifacts published): leave at once instead of
            # waiting for library threads (Olive's telemetry, torch's pools) to wind down, which kept
            # finished jobs alive for 30 s and more.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        if args.cmd == "init":
            recipe, _ = recipe_from_args(args)
            recipe.save(args.path)
            print(f"wrote {args.path}")
            return EXIT_OK
        if args.cmd == "build":
            recipe, explicit = recipe_from_args(args)
            if args.print_command:  # a chosen preset's values are implied by --preset; 'auto' stays as given
                shown = with_preset(recipe, explicit) if recipe.preset not in ("auto", "custom") else recipe
                print(preview_command(shown, args.recipe))
                return EXIT_OK
            recipe = with_preset(recipe, explicit)
            print(preset_lines(recipe), flush=True)
            job_dir = jobs.create_job(recipe)
            print(f"adapter '{recipe.adapter_name}' onto "
                  + (f"base '{recipe.base}'" if recipe.base else f"a new base from {recipe.base_model}"), flush=True)
            jobs.launch(job_dir)
            print(f"job {job_dir.name} ({job_dir})", flush=True)
            return EXIT_OK if args.detach else follow(job_dir, args.quiet)
        if args.cmd == "jobs":
            for j in jobs.list_jobs():
                print(f"{j.job_id:40s} {j.status:12s} {j.adapter:20s} {j.error[:60]}")
            return EXIT_OK
        if args.cmd == "status":
            print(jobs.dump(_job_dir(args.job)))
            return EXIT_OK
        if args.cmd == "cancel":
            s = jobs.cancel(_job_dir(args.job))
            print(f"cancelled in {s:.1f} s")
            return EXIT_OK
        if args.cmd == "resume":
            job_dir = _job_dir(args.job)
            jobs.launch(job_dir)
            return follow(job_dir)
        if args.cmd == "olive-config":
            return export_olive_config(with_preset(*recipe_from_args(args)), Path(args.output))
    except (RecipeError, DataError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
