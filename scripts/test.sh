#!/usr/bin/env bash
# Installs what the tests need and runs the whole suite (lint, types, tests).  README's second command; .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_prereqs.sh
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
# pytest exits 5 when it collected no tests: set -e makes that a failure, as it should be
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
