#!/usr/bin/env bash
# Installs Squall into .venv and starts it with the demo function deployed.  README's first command.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_prereqs.sh
.venv/bin/pip install -q --disable-pip-version-check -e .
exec .venv/bin/squall up --demo "$@"
