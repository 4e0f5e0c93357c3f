"""Pod discovery for the node's Prometheus, as `kubernetes_sd_configs: [{role: pod}]` does it.

Debian's Prometheus (2.42) is built without Kubernetes service discovery, so the harness
plays that part: it lists pods and writes file_sd targets carrying the same
`__meta_kubernetes_pod_*` labels Prometheus would attach. The README's relabel rules then run
on them unchanged (see controlplane: the README's jobs with file_sd in place of the pod role).

`python -m modelpilot.devcluster.discovery --kubeconfig K --out F` keeps F current.
"""

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import click
from kubernetes import client, config

_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def _name(prefix: str, key: str) -> str:
    return prefix + _UNSAFE.sub("_", key)


def pod_targets(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets Prometheus' pod role makes of one pod (as the API returns it): one per
    declared container port, none before the pod has an IP."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    ip = status.get("podIP")
    if not ip:
        return []
    labels: dict[str, str] = {
        "__meta_kubernetes_namespace": meta["namespace"],
        "__meta_kubernetes_pod_name": meta["name"],
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_pod_uid": meta.get("uid", ""),
        "__meta_kubernetes_pod_node_name": spec.get("nodeName", ""),
        "__meta_kubernetes_pod_host_ip": status.get("hostIP", ""),
        "__meta_kubernetes_pod_phase": status.get("phase", ""),
        "__meta_kubernetes_pod_ready": next(
            (c["status"].lower() for c in status.get("conditions") or [] if c["type"] == "Ready"),
            "unknown",
        ),
    }
    for key, value in (meta.get("labels") or {}).items():
        labels[_name("__meta_kubernetes_pod_label_", key)] = value
        labels[_name("__meta_kubernetes_pod_labelpresent_", key)] = "true"
    for key, value in (meta.get("annotations") or {}).items():
        labels[_name("__meta_kubernetes_pod_annotation_", key)] = value
        labels[_name("__meta_kubernetes_pod_annotationpresent_", key)] = "true"
    for owner in meta.get("ownerReferences") or []:
        if owner.get("controller"):
            labels["__meta_kubernetes_pod_controller_kind"] = owner["kind"]
            labels["__meta_kubernetes_pod_controller_name"] = owner["name"]
    targets = []
    for init, containers in ((False, spec["containers"]), (True, spec.get("initContainers") or [])):
        for container in containers:
            for port in container.get("ports") or []:
                number = port["containerPort"]
                targets.append(
                    {
                        "targets": [f"{ip}:{number}"],
                        "labels": {
                            **labels,
                            "__meta_kubernetes_pod_container_init": str(init).lower(),
                            "__meta_kubernetes_pod_container_name": container["name"],
                            "__meta_kubernetes_pod_container_image": container.get("image", ""),
                            "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                            "__meta_kubernetes_pod_container_port_number": str(number),
                            "__meta_kubernetes_pod_container_port_protocol": port.get(
                                "protocol", "TCP"
                            ),
                        },
                    }
                )
    return targets


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)  # Prometheus never reads half a file


@click.command()
@click.option("--kubeconfig", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--interval", default=1.0, show_default=True)
def main(kubeconfig: Path, out: Path, interval: float) -> None:
    """Keep OUT (file_sd JSON) in step with every pod on the cluster."""
    config.load_kube_config(str(kubeconfig))
    api = client.ApiClient()
    core = client.CoreV1Api(api)
    while True:
        try:
            pods = core.list_pod_for_all_namespaces(_preload_content=False)
            items = json.loads(pods.data)["items"]
            targets = [t for pod in items for t in pod_targets(pod)]
            _write_if_changed(out, json.dumps(targets, indent=1, sort_keys=True))
        except Exception as exc:  # the API server restarting: try again next round
            click.echo(f"listing pods failed: {exc}", err=True)
        time.sleep(interval)


if __name__ == "__main__":
    main()
