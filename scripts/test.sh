#!/usr/bin/env bash
# Installs what the tests need and runs the whole suite (lint, types, tests).  README's second command; .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_prereqs.sh
# the dashboard's browser tests drive Debian's chromium through Playwright (never `playwright install`)
[ -x /usr/bin/chromium ] || _apt chromium || echo "note: chromium missing: the dashboard browser tests will skip" >&2
# docs/cluster.md's load-balancer configs are run (HAProxy) and syntax-checked (nginx) by test_three_nodes.py.
# A policy-rc.d that forbids starts keeps the packages' services from starting (nothing is left running).
if ! command -v haproxy >/dev/null 2>&1 || ! command -v nginx >/dev/null 2>&1; then
    nostart=""
    [ "$(id -u)" != 0 ] || [ -e /usr/sbin/policy-rc.d ] || { nostart=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' > "$nostart"; chmod +x "$nostart"; }
    _apt haproxy nginx-light || echo "note: haproxy/nginx missing: the load-balancer tests will skip" >&2
    [ -z "$nostart" ] || rm -f "$nostart"
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
# the dependency rules (pyproject.toml [tool.importlinter], docs/design.md "Code map")
.venv/bin/lint-imports
# The suite on three xdist workers (2 cores: modules spend much of their time waiting on servers, forks and
# sleeps; 449 s vs 538 s with two): whole modules per worker (--dist loadfile), since their module-scoped servers and
# nodes start once per module; every test picks free ports and names of its own (cgroups, network namespaces, data
# dirs), so workers never collide.  Modules are handed out in collection order (--no-loadscope-reorder), which
# tests/conftest.py (LONGEST_FIRST) makes longest first.  SQUALL_TEST_WORKERS=0 runs it in this process.
# SQUALL_TEST_BACKEND=both: the contract suites and the store-backed e2e modules are collected a second time as
# `<module>[postgres]` (tests/conftest.py, POSTGRES_PASS), on PostgreSQL (cluster mode's state layer): one behaviour on
# both backends, in the same run and on the same workers as the rest (no second pytest after it).
# Coverage is opt-in (SQUALL_TEST_COVERAGE=1): it measures the test process and the `squall up` servers and CLI runs
# it starts, and costs +79% CPU on Python 3.11 (docs/SPEC.md, "The test suite", has the last measured figure).
# pytest exits 5 when it collected no tests: set -e makes that a failure, as it should be.
# Bytecode is cached (__pycache__, git-ignored) even where the environment says PYTHONDONTWRITEBYTECODE: the suite
# starts hundreds of Python processes (servers, CLI runs, pytest workers), and each would compile src/ and re-rewrite
# every test module's asserts again (measured: a CLI run 0.90 -> 0.63 s CPU, a worker's collection 14.4 -> 4.8 s CPU).
unset PYTHONDONTWRITEBYTECODE
workers="${SQUALL_TEST_WORKERS:-3}"
dist=()
[ "$workers" = 0 ] || dist=(-n "$workers" --dist loadfile --no-loadscope-reorder)
cov=()
[ "${SQUALL_TEST_COVERAGE:-0}" = 0 ] || cov=(--cov --cov-report=term)
SQUALL_TEST_BACKEND="${SQUALL_TEST_BACKEND:-both}" .venv/bin/python -m pytest -q -p no:cacheprovider "${dist[@]}" \
    "${cov[@]}" "$@"
