#!/usr/bin/env bash
# `make setup`: Debian packages, the Python environment, and kube-apiserver.
# Idempotent: when everything is in place it only checks (a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(etcd-server prometheus golang-go rsync golang-github-modern-go-reflect2-dev
              dpkg-dev openssl ca-certificates chromium redis-server
              containerd runc containernetworking-plugins iptables mmdebstrap umoci)
PYTHON="${PYTHON:-python3}"
VENV=.venv

# --- Debian packages --------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# With KUBEBUILDER_ASSETS (envtest binaries) nothing needs building, so no Go toolchain.
if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]; then
  build_deps=" golang-go rsync golang-github-modern-go-reflect2-dev dpkg-dev "
  kept=(); for pkg in "${missing[@]}"; do [[ "$build_deps" == *" $pkg "* ]] || kept+=("$pkg"); done
  missing=("${kept[@]}")
fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then missing+=(python3-venv); fi
# The tests drive the cluster with kubectl as a user would; Debian's kubectl is 1.20.
command -v kubectl >/dev/null || missing+=(kubernetes-client)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing Debian packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python environment (pinned by requirements*.lock) -----------------------------------
stamp="$VENV/.modelpilot-installed"
want=$(cat requirements.lock requirements-dev.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.lock
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi

# --- kube-apiserver and kube-controller-manager (the demo's) -----------------------------
# envtest binaries have no controller manager: `make demo` then asks for hack/build-kube.sh.
if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]; then
  exit 0
fi
bash hack/build-kube.sh
