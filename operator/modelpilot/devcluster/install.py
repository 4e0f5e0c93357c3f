"""`kubectl apply -k` for a server that may predate some of the manifests' API versions.

The manifests target current Kubernetes (policy/v1 PodDisruptionBudgets, GA since 1.21);
the local control plane is 1.20. This applies what the server serves and says what it
left out, so the tests install exactly what users install, minus what 1.20 cannot hold.
"""

import subprocess
from pathlib import Path

import yaml


def install(kubeconfig: Path, folder: Path) -> list[str]:
    """Apply the kustomization in `folder`; returns "Kind name (apiVersion)" left out."""

    def kubectl(*args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            ["kubectl", f"--kubeconfig={kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    served = set(kubectl("api-versions").split())
    documents = [d for d in yaml.safe_load_all(kubectl("kustomize", str(folder))) if d]
    kept = [d for d in documents if d.get("apiVersion") in served]
    skipped = [
        f"{d.get('kind')} {d.get('metadata', {}).get('name')} ({d.get('apiVersion')})"
        for d in documents
        if d.get("apiVersion") not in served
    ]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(kept))
    return skipped
