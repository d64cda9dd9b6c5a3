#!/usr/bin/env bash
# One entry point for a fresh machine:
#   ./run.sh app [app.py options]   set up (once) and start the app on the embedded default model
#   ./run.sh test [pytest options]  set up (once) and run the whole test suite
# The GPU set (requirements.txt) is chosen when nvidia-smi sees a GPU, the CPU set otherwise.
set -euo pipefail
cd "$(dirname "$0")"
cmd="${1:-app}"; shift || true
PY="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  REQ=requirements.txt; SET=gpu
else
  REQ=requirements-cpu.txt; SET=cpu
fi
# one stamp for the app's set, one more for the test tools on top of it: `./run.sh app` after `./run.sh test`
# (or the other way round) installs nothing again
stamp="$VENV/.installed-$SET-$(cat "$REQ" requirements-nodeps.txt | sha256sum | cut -c1-12)"
test_stamp="$stamp-test-$(sha256sum <requirements-test.txt | cut -c1-12)"

if [ ! -f "$stamp" ]; then
  echo "== setting up $VENV with the $SET set ($REQ) =="
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch first and alone, so that a pinned CPU wheel is taken and no CUDA build is pulled in by others
  "$VENV/bin/python" -m pip install -q "$(grep -E '^torch==' "$REQ")"
  "$VENV/bin/python" -m pip install -q -r "$REQ"
  "$VENV/bin/python" -m pip install -q --no-deps -r requirements-nodeps.txt
  if [ "$SET" = gpu ]; then  # the fused LoRA op, built now rather than at the first chat (nvcc: ~30 s)
    "$VENV/bin/python" -m engine.fused_lora --device cuda || echo "(the engine will serve LoRA with onnxruntime's MatMul chain)"
  fi
  touch "$stamp"
fi
if [ "$cmd" = test ] && [ ! -f "$test_stamp" ]; then
  echo "== adding the test tools (requirements-test.txt) to $VENV =="
  "$VENV/bin/python" -m pip install -q -r requirements-test.txt
  touch "$test_stamp"
fi

case "$cmd" in
  app)
    exec "$VENV/bin/python" app.py "$@" ;;
  test)
    if [ "$SET" = gpu ]; then
      # the GPU machine cannot install chromium: the browser tests are deselected by their marker
      exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests -m "not browser" "$@"
    fi
    if ! command -v chromium >/dev/null 2>&1; then
      echo "== installing Debian's chromium for the browser tests =="
      SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
      $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
    fi
    # pytest exits 5 when no test ran: that is a failure here too
    exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests "$@" ;;
  *)
    echo "usage: ./run.sh app|test [options]" >&2; exit 2 ;;
esac
