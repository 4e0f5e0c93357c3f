#!/usr/bin/env bash
# `make test-kind` (opt-in): the integration tier against a kind cluster. Tests that need
# the local control plane itself (its processes, ports) are skipped there; Prometheus still
# runs locally. Needs a running Docker engine and the kind binary.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v kind >/dev/null || { echo "make test-kind: skipped: kind is not installed (https://kind.sigs.k8s.io)"; exit 0; }
docker info >/dev/null 2>&1 || { echo "make test-kind: skipped: no Docker engine answers (docker info failed)"; exit 0; }

NAME=modelpilot-test
DIR=.local/kind
mkdir -p "$DIR"
kind get clusters 2>/dev/null | grep -qx "$NAME" || kind create cluster --name "$NAME" --wait 120s
kind get kubeconfig --name "$NAME" > "$DIR/kubeconfig"
export KUBECONFIG="$DIR/kubeconfig"

# The operator's identity: its ServiceAccount and a short-lived token for it.
kubectl get namespace modelpilot-system >/dev/null 2>&1 || kubectl create namespace modelpilot-system
kubectl -n modelpilot-system get serviceaccount modelpilot-operator >/dev/null 2>&1 \
  || kubectl -n modelpilot-system create serviceaccount modelpilot-operator
token=$(kubectl -n modelpilot-system create token modelpilot-operator --duration=2h)
kubectl config view --raw --minify > "$DIR/operator.kubeconfig"
KUBECONFIG="$DIR/operator.kubeconfig" kubectl config set-credentials operator --token="$token" >/dev/null
KUBECONFIG="$DIR/operator.kubeconfig" kubectl config set-context --current --user=operator >/dev/null

MODELPILOT_TEST_KUBECONFIG="$PWD/$DIR/kubeconfig" \
MODELPILOT_TEST_OPERATOR_KUBECONFIG="$PWD/$DIR/operator.kubeconfig" \
  .venv/bin/python -m pytest tests/integration "$@"
echo "kind cluster '$NAME' left running; delete it with: kind delete cluster --name $NAME"
