#!/usr/bin/env bash
# One variant of a shipped demo adapter, built and measured apart from the repository (demo tuning):
#   bench/demo_sweep.sh NAME RECIPE [--field value ...]     e.g. bench/demo_sweep.sh p-drop10 recipes/default-pirate.yaml --lora.dropout 0.1
# Copies models/, data/ and adapters/ into $SWEEP/NAME (default /tmp/demo-sweep), builds the recipe there with
# the overrides (`python -m pipeline build`), then measures all 100 held-out prompts per dataset with
# `python -m bench.demo --n 100` (the acceptance takes the first 10: tune against the 100, not the 10).
# Writes $SWEEP/NAME/demo100.json and prints the readable/voice counts and the metadata eval.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; recipe=$2; shift 2
repo=$PWD
py=${PYTHON:-$repo/.venv/bin/python}
ws=${SWEEP:-/tmp/demo-sweep}/$name
rm -rf "$ws"; mkdir -p "$ws"
cp -r models data adapters "$ws/"
[ -n "${DATA_DIR:-}" ] && cp "$DATA_DIR"/*.jsonl "$ws/data/pirate/"   # another pirate train/test pair
t0=$SECONDS
# run from the copy: the CLI takes relative data paths from the working directory first
(cd "$ws" && STUDIO_HOME=$ws PYTHONPATH=$repo $py -m pipeline build "$repo/$recipe" --quiet "$@" >"$ws/build.log" 2>&1) \
    || { tail -20 "$ws/build.log"; exit 1; }
grep -q "\"train_file\": \"$ws/" "$ws"/runs/*/stages/prepare/DONE.json || { echo "trained on data outside $ws"; exit 1; }
echo "$name: built in $((SECONDS - t0)) s"
$py -m bench.demo --models "$ws/models" --adapters "$ws/adapters" --n 100 --quiet --json "$ws/demo100.json" >"$ws/demo.log" 2>&1
grep -E "^== |metadata eval" "$ws/demo.log"
