#!/usr/bin/env bash
# Creates .venv with the pinned PyTorch-side test environment (python/requirements-ci.txt) from PyPI, unless it is
# already there with the same requirements. Used by .ci/run and by developers: `bash scripts/python-env.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
req=python/requirements-ci.txt
stamp=.venv/.requirements
if [ -x .venv/bin/python ] && cmp -s "$req" "$stamp"; then echo ".venv is up to date"; exit 0; fi
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check --no-input -r "$req"
cp "$req" "$stamp"
.venv/bin/python -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)'
