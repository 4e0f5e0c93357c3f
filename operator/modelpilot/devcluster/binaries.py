"""Where the local control plane's programs come from."""

import os
import shutil
from pathlib import Path

CACHE_DIR = Path(os.environ.get("MODELPILOT_CACHE", Path.home() / ".cache" / "modelpilot"))

# What to run when a program is missing; one line a person can act on.
_HOW_TO_GET = {
    "kube-apiserver": "run `make setup` (builds it into ~/.cache/modelpilot/bin) "
    "or set KUBEBUILDER_ASSETS to a folder of envtest binaries",
    "kube-controller-manager": "run `bash hack/build-kube.sh` (builds it into "
    "~/.cache/modelpilot/bin; `make setup` does unless KUBEBUILDER_ASSETS is set)",
    "etcd": "apt-get install etcd-server, or set KUBEBUILDER_ASSETS",
    "prometheus": "apt-get install prometheus",
    "promtool": "apt-get install prometheus",
    "openssl": "apt-get install openssl",
}


class MissingBinaryError(RuntimeError):
    """A program the local control plane needs is not installed."""


def find_binary(name: str) -> str:
    """Absolute path of `name`: KUBEBUILDER_ASSETS first, then our cache, then PATH."""
    candidates: list[Path] = []
    if assets := os.environ.get("KUBEBUILDER_ASSETS"):
        candidates.append(Path(assets) / name)
    candidates.append(CACHE_DIR / "bin" / name)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    if found := shutil.which(name):
        return found
    hint = _HOW_TO_GET.get(name, f"install {name}")
    raise MissingBinaryError(f"{name} not found: {hint}")
