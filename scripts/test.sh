#!/bin/sh
# The test command: lint, unit tests (offline), then the end-to-end tests that build
# and boot a real kernel in QEMU. Pass -m "not e2e" to skip the slow part.
set -eu
cd "$(dirname "$0")/.."
. .venv/bin/activate
ruff check harness tests scripts
exec python -m pytest -ra "$@"
