#!/usr/bin/env bash
# Re-pin requirements.lock (runtime) and requirements-dev.lock (tests, lint): resolve
# pyproject.toml's dependencies in throw-away environments and freeze the results.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
freeze() {  # freeze VENV EXTRAS OUT
  "${PYTHON:-python3}" -m venv "$tmp/$1"
  "$tmp/$1/bin/pip" install -q --disable-pip-version-check -e ".$2"
  { echo "# Pinned by 'make lock' from pyproject.toml; installed by 'make setup'."
    "$tmp/$1/bin/pip" freeze --exclude-editable --disable-pip-version-check | grep -v '^-e '
  } > "$3"
  echo "$3: $(grep -vc '^#' "$3") packages"
}
freeze runtime "" requirements.lock
freeze dev "[dev]" requirements-dev.lock
