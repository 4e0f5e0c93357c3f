#!/usr/bin/env bash
# Re-pin requirements.lock: resolve pyproject.toml's dependencies (with dev extras) in a
# throw-away environment and freeze the result.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"${PYTHON:-python3}" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check -e '.[dev]'
{ echo "# Pinned by 'make lock' from pyproject.toml; installed by 'make setup'."
  "$tmp/venv/bin/pip" freeze --exclude-editable --disable-pip-version-check | grep -v '^-e '
} > requirements.lock
echo "requirements.lock: $(grep -vc '^#' requirements.lock) packages"
