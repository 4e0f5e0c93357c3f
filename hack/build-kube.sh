#!/usr/bin/env bash
# Builds the Kubernetes 1.20.2 servers from Debian's `kubernetes` source package and caches
# them under $MODELPILOT_CACHE/bin (default ~/.cache/modelpilot). Idempotent: exits at once
# when all are cached. The fast tests need the API server; `make demo` also runs the
# controller manager; the real node (tests/e2e) adds kubelet, kube-scheduler and kube-proxy.
# See design.md, "The local control plane".
set -euo pipefail

CACHE="${MODELPILOT_CACHE:-$HOME/.cache/modelpilot}"
TARGETS=()
for name in kube-apiserver kube-controller-manager kubelet kube-scheduler kube-proxy; do
  [ -x "$CACHE/bin/$name" ] || TARGETS+=("$name")
done
[ "${#TARGETS[@]}" -eq 0 ] && exit 0

command -v go >/dev/null || { echo "error: go not found; install it with: apt-get install golang-go" >&2; exit 1; }
command -v rsync >/dev/null || { echo "error: rsync not found; install it with: apt-get install rsync" >&2; exit 1; }
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
[ -d "$REFLECT2" ] || { echo "error: $REFLECT2 missing; install it with: apt-get install golang-github-modern-go-reflect2-dev" >&2; exit 1; }

# apt-get source needs a deb-src entry: derive one from the system's own sources, never a
# hard-coded mirror.
if ! apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes'; then
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      > /etc/apt/sources.list.d/modelpilot-deb-src.sources
  elif [ -f /etc/apt/sources.list ]; then
    grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' \
      > /etc/apt/sources.list.d/modelpilot-deb-src.list
  else
    echo "error: no apt sources found to derive a deb-src entry from" >&2; exit 1
  fi
  apt-get update -q >/dev/null
fi

SRC="$CACHE/src"
mkdir -p "$SRC" "$CACHE/bin"
cd "$SRC"
DIR=$(find . -maxdepth 1 -type d -name 'kubernetes-1.20*' | head -n1)
if [ -z "$DIR" ]; then
  apt-get source -q kubernetes >/dev/null
  DIR=$(find . -maxdepth 1 -type d -name 'kubernetes-1.20*' | head -n1)
fi
cd "$DIR"

# The vendored reflect2 1.0.1 makes the server segfault under Go >= 1.18; Debian's 1.0.2 works.
rsync -a --delete --exclude='*_test.go' "$REFLECT2/" vendor/github.com/modern-go/reflect2/

# As in the package's debian/rules.
export GOPATH="$PWD/.go" CGO_ENABLED=0 GOFLAGS=-mod=vendor GO111MODULE=on
mkdir -p .go/src/k8s.io
[ -L .go/src/k8s.io/kubernetes ] || ln -s ../../.. .go/src/k8s.io/kubernetes
echo "building ${TARGETS[*]} 1.20.2 from source (about 6 minutes on 2 cores)..."
WHAT=$(printf 'cmd/%s ' "${TARGETS[@]}")
make WHAT="${WHAT% }" >"$CACHE/build.log" 2>&1 || { echo "error: build failed, see $CACHE/build.log" >&2; exit 1; }
for name in "${TARGETS[@]}"; do
  install -m 0755 "_output/bin/$name" "$CACHE/bin/$name"
  echo "$name cached at $CACHE/bin/$name"
done
