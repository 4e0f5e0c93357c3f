"""`kubectl apply -k` for a server that may predate some of the manifests' API versions.

The manifests target current Kubernetes (policy/v1 PodDisruptionBudgets, GA since 1.21);
the local control plane is 1.20. This applies what the server serves and says what it
left out, so the tests install exactly what users install, minus what 1.20 cannot hold.
"""

import os
from collections.abc import Callable
from pathlib import Path

import yaml

from modelpilot.devcluster import controlplane, images, node
from modelpilot.devcluster.kubectl import kubectl


def install(kubeconfig: Path, folder: Path) -> list[str]:
    """Apply the kustomization in `folder`; returns "Kind name (apiVersion)" left out."""

    served = set(kubectl(kubeconfig, "api-versions").split())
    documents = [d for d in yaml.safe_load_all(kubectl(kubeconfig, "kustomize", str(folder))) if d]
    kept = [d for d in documents if d.get("apiVersion") in served]
    skipped = [
        f"{d.get('kind')} {d.get('metadata', {}).get('name')} ({d.get('apiVersion')})"
        for d in documents
        if d.get("apiVersion") not in served
    ]
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(kept))
    return skipped


IMAGE = "ghcr.io/modelpilot/modelpilot"  # what manifests/ name


def dev_overlay(
    dest: Path,
    manifests: Path,
    bases: list[str],
    image_ref: str,
    prometheus_url: str,
    operator_args: list[str] | None = None,
) -> Path:
    """A kustomization over `manifests` (its folders `bases`, "" for the top) that differs
    from what users apply in two things only: the image (built here, never pulled) and the
    Prometheus the operator reads; and, when given, the operator's arguments (the demo runs
    it at demo speed)."""
    dest.mkdir(parents=True, exist_ok=True)
    name, tag = image_ref.rsplit(":", 1)
    (dest / "operator-env.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "modelpilot-operator", "namespace": "modelpilot-system"},
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "operator",
                                    **({"args": operator_args} if operator_args else {}),
                                    "env": [
                                        {
                                            "name": "MODELPILOT_PROMETHEUS_URL",
                                            "value": prometheus_url,
                                        },
                                        # The meter sidecar is the same image.
                                        {"name": "MODELPILOT_METER_IMAGE", "value": image_ref},
                                    ],
                                }
                            ]
                        }
                    }
                },
            }
        )
    )
    (dest / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(manifests / base, dest) for base in bases],
                "images": [{"name": IMAGE, "newName": name, "newTag": tag}],
                "patchesStrategicMerge": ["operator-env.yaml"],
            },
            sort_keys=False,
        )
    )
    return dest


def on_node(
    state: controlplane.ClusterState,
    operator_args: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """ModelPilot on the control plane's node as users install it: the images built and
    imported into the node, then `kubectl apply -k` of the dev overlay (manifests/ and
    manifests/gpu), waiting for the operator and the activator to roll out. Returns the
    image refs by repository."""
    refs = {}
    for image in (images.modelpilot_image(), images.sample_model_image()):
        archive = images.build(image, log=log)
        images.import_into(archive, image.ref, node.containerd_socket(state.node_dir))
        refs[image.name] = image.ref
    overlay = dev_overlay(
        state.state_dir / "overlay",
        controlplane.REPO_ROOT / "manifests",
        ["", "gpu"],
        refs[images.modelpilot_image().name],
        state.prometheus_url,
        operator_args,
    )
    install(state.kubeconfig, overlay)
    for deployment in ("modelpilot-operator", "modelpilot-activator"):
        namespace = controlplane.OPERATOR_NAMESPACE
        rollout = ("rollout", "status", f"deployment/{deployment}", "--timeout=180s")
        kubectl(state.kubeconfig, "-n", namespace, *rollout, timeout=200)
    return refs
