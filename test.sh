#!/usr/bin/env bash
# Runs the whole Pendra worker test suite. Creates a project-local virtualenv (.venv) on first use
# and installs the project with its test dependencies into it. Extra arguments go to pytest.
# The first run builds llama-cpp-python from source (about 8 minutes on 2 cores); pip caches the
# wheel, so later runs start in seconds.
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "test.sh: creating .venv with $($python --version 2>&1)"
  "$python" -m venv .venv
fi

stamp=.venv/.pendra-test-deps
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "test.sh: installing pendra-worker[test] into .venv (first run builds llama-cpp-python: ~8 min)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test]"
  touch "$stamp"
fi

# shellcheck lints get.sh in the test suite; on a root Debian box (CI) install it when missing.
if ! command -v shellcheck >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test.sh: installing shellcheck (Debian package) for the get.sh lint test"
  (apt-get install -y -qq shellcheck >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq shellcheck >/dev/null 2>&1; }) \
    || echo "test.sh: shellcheck could not be installed; its test will skip"
fi

.venv/bin/python -m ruff check worker installer pendra_tui tests bench
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
