"""The operator's pod watch against the real API server, under the operator's RBAC."""

import asyncio
from pathlib import Path

import kopf
import pytest
from kubernetes import client

from modelpilot.api import MODEL_LABEL
from modelpilot.controller import pod_watch
from modelpilot.controller.pod_watch import PodWatch
from modelpilot.devcluster.kubelet import FakeKubelet

from .conftest import until

# The session operator's fixture installs the manifests: the operator's RBAC this runs under.
pytestmark = pytest.mark.usefixtures("operator")


async def test_pods_are_listed_then_followed_across_watch_restarts(
    kubeconfigs: tuple[Path, Path],
    admin_api: client.ApiClient,
    kubelet: FakeKubelet,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfigs[1]))  # the operator's identity
    monkeypatch.setattr(pod_watch, "WATCH_SECONDS", 2)  # the server ends each watch soon
    monkeypatch.setattr(pod_watch, "PAGE", 2)  # the first list comes in pages
    key = (namespace, "chat")
    for i in range(5):
        kubelet.create_pod(namespace, f"chat-{i}", labels={MODEL_LABEL: "chat"})
    kubelet.create_pod(namespace, "other", labels={})  # no model's pod
    woken: list[tuple[str, str]] = []
    settings = kopf.OperatorSettings()
    login = lambda: kopf.login_with_kubeconfig(settings=settings)  # noqa: E731
    watch = PodWatch(login, [namespace], woken.append)
    task = asyncio.create_task(watch.run())
    try:
        await asyncio.wait_for(watch.listed.wait(), 10)
        assert {p.name for p in watch.pods[key]} == {f"chat-{i}" for i in range(5)}
        assert woken == [key]
        assert list(watch.pods) == [key]

        await asyncio.sleep(3)  # past the first watch's end: what follows is a resumed one
        kubelet.set_status(namespace, "chat-0", ready="True")
        assert await until(lambda: any(p.ready == "True" for p in watch.pods[key]), 10)
        core = client.CoreV1Api(admin_api)
        core.delete_namespaced_pod("chat-1", namespace, grace_period_seconds=0)
        assert await until(lambda: "chat-1" not in {p.name for p in watch.pods[key]}, 10)
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
