"""Two operators against one cluster: exactly one leads and writes (the API server's
managedFields name the writer), and the other takes over when the leader is killed."""

import time
from pathlib import Path

import pytest
from kubernetes import client

from modelpilot.devcluster import controlplane
from modelpilot.devcluster.servers import OperatorProcess

from .conftest import DEDICATED_SHARD, SHARD_LABEL
from .operator_helpers import Models, equal, eventually, model_spec

pytestmark = pytest.mark.usefixtures("operator")  # the session operator must ignore them
SHARD = {SHARD_LABEL: DEDICATED_SHARD}


def writers(models: Models, name: str) -> set[str]:
    """The field managers of the ModelDeployment's status, as the API server records them."""
    body = models.get(name)
    return {
        entry["manager"]
        for entry in body["metadata"].get("managedFields", [])
        if "f:status" in entry.get("fieldsV1", {})
    }


def test_one_leader_writes_and_a_standby_takes_over(
    admin_api: client.ApiClient,
    namespace: str,
    cluster: controlplane.ClusterState,
    kubeconfigs: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    def start(name: str) -> OperatorProcess:
        return OperatorProcess(
            tmp_path / f"{name}.log",
            kubeconfigs[1],
            namespace=namespace,
            selector=f"{SHARD_LABEL}={DEDICATED_SHARD}",
            prometheus_url=cluster.prometheus_url,
            scaler_interval=1,
            resync_seconds=1,
        )

    first = start("first")
    eventually(lambda: equal(first.health().get("leader"), True))
    second = start("second")
    try:
        time.sleep(3)  # more than a retry period: the standby has tried, and failed, to lead
        leader, standby = first.health(), second.health()
        assert (leader["leader"], standby["leader"]) == (True, False)
        assert leader["lease"] == standby["lease"]

        models = Models(admin_api, namespace)
        models.create("chat", model_spec(), labels=SHARD)
        eventually(lambda: equal(models.status("chat").get("observedGeneration"), 1))
        models.patch_spec("chat", {"meter": {"maxConcurrency": 2}})
        eventually(lambda: equal(models.status("chat").get("observedGeneration"), 2))
        assert writers(models, "chat") == {leader["identity"]}

        first.kill()
        killed = time.monotonic()
        eventually(lambda: equal(second.health().get("leader"), True), timeout=25)
        failover = time.monotonic() - killed
        print(f"failover after SIGKILL: {failover:.1f}s")
        assert failover <= 15 + 2  # the lease duration, plus one retry period

        models.patch_spec("chat", {"meter": {"maxConcurrency": 3}})
        eventually(lambda: equal(models.status("chat").get("observedGeneration"), 3))
        assert writers(models, "chat") == {leader["identity"], standby["identity"]}
    finally:
        second.stop()
        first.stop()
    for process in (first, second):
        text = process.log_text()
        assert "Traceback" not in text and "Forbidden" not in text, text[-3000:]
