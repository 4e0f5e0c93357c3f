"""kopf handlers: translate watch events into the workload applier and the status worker.

Indexes (Deployments, ModelDeployments by model) are kept by kopf from its watches, the pods
by the operator's own lean watch (`pod_watch`); nothing here lists objects on a timer.
"""

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes.client import ApiException
from prometheus_api_client import PrometheusConnect
from prometheus_client import REGISTRY
from urllib3.util.retry import Retry

from modelpilot.activator.routing import Activators
from modelpilot.advisor import source
from modelpilot.api import (
    ACTIVATION_ANNOTATION,
    ACTIVATOR_APP,
    GROUP,
    HELD_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MODEL_LABEL,
    PLURAL,
    VERSION,
    Key,
)
from modelpilot.api.spec import ModelDeploymentSpec
from modelpilot.controller.activator_router import ActivatorRouter
from modelpilot.controller.advisor_loop import AdvisorLoop
from modelpilot.controller.config import OperatorConfig
from modelpilot.controller.gpu_loop import GpuLoop
from modelpilot.controller.kopf_session import bounded, connection_limit
from modelpilot.controller.kube import Kube, load_api_client, unreachable, use_api_threads
from modelpilot.controller.metrics import StatusCollector
from modelpilot.controller.pod_watch import ListWatch, PodWatch
from modelpilot.controller.refs import DeploymentRef, Indexes, ModelRef
from modelpilot.controller.scaler_loop import ScalerLoop
from modelpilot.controller.status_worker import StatusWorker
from modelpilot.controller.workload import Outcome, Refused, WorkloadApplier
from modelpilot.times import parse_time
from modelpilot.workload.validate import validate

MD = (GROUP, VERSION, PLURAL)
MANAGED: Mapping[str, Any] = {MANAGED_BY_LABEL: MANAGED_BY, MODEL_LABEL: kopf.PRESENT}
# The operator's per-model series, read from whichever worker currently runs (after a lost
# and regained lease, a new one).
STATUS_METRICS = StatusCollector(lambda: {})
REGISTRY.register(STATUS_METRICS)
# The advisor's history queries are its heaviest (seconds for hundreds of models).
ADVISOR_DEADLINE = 60.0
LIST_CHUNK = 500
ACTIVATION_FRESH_SECONDS = 30.0


def _key(namespace: str | None, name: str) -> Key:
    assert namespace is not None, "ModelPilot's objects are all namespaced"
    return namespace, name


@kopf.on.login()
async def login(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any
) -> kopf.AiohttpSession | None:
    """kopf's usual credentials (in-cluster, else the kubeconfig) on a bounded session."""
    info = kopf.login_via_client(settings=settings, logger=logger, **kwargs)
    if info is None:
        return None
    config: OperatorConfig = memo.config
    return bounded(info, connection_limit(config.namespaces))


@kopf.on.startup()
async def startup(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    config: OperatorConfig = memo.config
    # kopf passes each index by its function's name (empty now, filled as watches start).
    model_index: kopf.Index[Key, ModelRef] = kwargs["models"]
    deployments: kopf.Index[Key, DeploymentRef] = kwargs["model_deployments"]
    # Our own names for kopf's bookkeeping, no kopf Events (we post specific ones).
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.enabled = False
    # The ModelDeployment CRD is installed before the operator: no need to watch CRDs
    # (and no RBAC to read them).
    settings.scanning.disabled = True
    # The first listing in pages: 10,000 pods in one answer is over 100 MiB parsed at once.
    settings.watching.chunk_size = LIST_CHUNK
    # Server-side filtering: only the objects of models, not the whole cluster.
    if config.selector:  # shards: several operators, each serving the models it selects
        settings.watching.label_selectors[GROUP, PLURAL] = config.selector
    settings.watching.label_selectors["apps", "deployments"] = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
    settings.watching.label_selectors["v1", "services"] = f"{MANAGED_BY_LABEL}={MANAGED_BY}"

    use_api_threads(config.status_concurrency * 2)
    kube = Kube(load_api_client(pool_size=config.status_concurrency * 2), manager=memo.identity)
    memo.kube = kube
    memo.applier = WorkloadApplier(kube, config.meter_image)

    def login() -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(settings=settings, logger=logger)

    def pods_changed(key: Key) -> None:
        memo.worker.wake(key)
        memo.router.wake(key)

    pod_watch = PodWatch(login, config.namespaces, pods_changed)
    memo.pod_watch_task = asyncio.create_task(pod_watch.run(), name="pod-watch")
    indexes = Indexes(
        model_index, pod_watch.pods, deployments, kwargs["deployment_hpas"], pod_watch.listed
    )
    memo.worker = StatusWorker(kube, indexes, config)
    memo.worker_task = asyncio.create_task(memo.worker.run(), name="status-worker")
    activators = ListWatch(
        login,
        [config.activator_namespace] if config.activator_namespace else [],
        lambda key: memo.router.wake(key),
        Activators,
        "/api/v1/{}pods",
        f"app.kubernetes.io/name={ACTIVATOR_APP}",
    )
    memo.router = ActivatorRouter(kube, indexes, memo.worker, config, activators.index)
    memo.router_task = asyncio.create_task(memo.router.run(), name="activator-router")
    if config.activator_namespace:
        memo.activators_task = asyncio.create_task(activators.run(), name="activator-watch")

    def prometheus(deadline: float) -> PrometheusConnect | None:
        """A client whose every query fails after `deadline` seconds, without retries: a
        hung Prometheus then reads as unavailable within a tick instead of freezing it."""
        if not config.prometheus_url:
            return None
        return PrometheusConnect(
            url=config.prometheus_url,
            disable_ssl=True,
            headers=source.UNCOMPRESSED,
            timeout=max(deadline, 1.0),
            retry=Retry(total=0),
        )

    memo.scaler = ScalerLoop(
        kube, prometheus(config.scaler_interval / 2), memo.worker, indexes, config.scaler_interval
    )
    memo.scaler.scale_to_zero = bool(config.activator_namespace)
    memo.scaler.router = memo.router
    memo.scaler_task = asyncio.create_task(memo.scaler.run(), name="scaler")
    memo.advisor = AdvisorLoop(
        kube,
        prometheus(ADVISOR_DEADLINE),
        memo.worker,
        indexes,
        config.advisor_interval,
        lookback=config.advisor_lookback_seconds,
        step=config.advisor_step_seconds,
        scrape_interval=config.scrape_interval_seconds,
        processes=config.advisor_processes,
    )
    memo.advisor_task = asyncio.create_task(memo.advisor.run(), name="advisor")
    memo.gpu = GpuLoop(
        kube, prometheus(config.gpu_interval / 2), memo.worker, indexes, config.gpu_interval
    )
    memo.gpu_task = asyncio.create_task(memo.gpu.run(), name="gpu")

    STATUS_METRICS.statuses = memo.worker.statuses  # this leadership's worker


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    tasks = ("pod_watch_task", "worker_task", "scaler_task", "advisor_task", "gpu_task")
    for name in (*tasks, "router_task", "activators_task"):
        if task := getattr(memo, name, None):
            task.cancel()


# -- Indexes ------------------------------------------------------------------------------


@kopf.index(*MD)
def models(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Key, ModelRef]:
    return {_key(namespace, name): ModelRef.from_body(body)}


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
def model_deployments(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, DeploymentRef]:
    return {_key(namespace, labels[MODEL_LABEL]): DeploymentRef.from_body(body)}


@kopf.index("autoscaling", "v1", "horizontalpodautoscalers")
def deployment_hpas(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Key, str]:
    """HPAs by the Deployment they scale: the scaler never fights one."""
    target = (body.get("spec") or {}).get("scaleTargetRef") or {}
    if target.get("kind") != "Deployment" or not target.get("name"):
        return {}
    return {_key(namespace, target["name"]): name}


# -- ModelDeployments ---------------------------------------------------------------------


@kopf.on.resume(*MD)
@kopf.on.create(*MD)
@kopf.on.update(*MD, field="spec")
async def reconcile(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    uid: str,
    meta: kopf.Meta,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Apply the workload for a valid spec; an invalid one only gets its condition (written
    by the status worker), so the operator never retries or crash-loops on it."""
    key = _key(namespace, name)
    generation = int(meta.get("generation") or 0)
    spec, problems = validate(body.get("spec"), name)
    if spec is None:
        logger.warning("invalid spec: %s", "; ".join(problems))
    elif outcome := await _apply(key, uid, generation, spec, body, memo, logger):
        for kind, what in outcome.items():
            if what != "unchanged":
                logger.info("%s %s", kind, what)
        if outcome["Deployment"] == "updated":
            await memo.kube.post_event(
                ModelRef.from_body(body).involved,
                "Normal",
                "RolloutStarted",
                f"Deployment {name} updated to spec generation {meta.get('generation')}",
            )
    memo.worker.mark_reconciled(key, generation)


async def _apply(
    key: Key,
    uid: str,
    generation: int,
    spec: ModelDeploymentSpec,
    body: Mapping[str, Any],
    memo: kopf.Memo,
    logger: kopf.Logger,
) -> dict[str, Outcome] | None:
    """Apply the workload; None when the API server refused it: that is the spec's
    problem (InvalidSpec with the server's words), not something to retry."""
    try:
        outcome: dict[str, Outcome] = await memo.applier.apply(
            key[1], key[0], uid, spec, body.get("status") or {}
        )
    except Refused as refused:
        logger.warning("%s", refused)
        memo.worker.refuse(key, generation, str(refused))
        return None
    except Exception as exc:
        if isinstance(exc, ApiException) or unreachable(exc):
            raise  # the API server's trouble, not the spec's: kopf retries
        # A bug rendering this spec: said on it, not retried forever.
        logger.exception("rendering %s/%s failed", *key)
        memo.worker.refuse(
            key, generation, f"the operator could not render this spec ({exc!r}); please report it"
        )
        return None
    memo.worker.accept(key)
    return outcome


# -- Owned objects and pods ------------------------------------------------------------------


CONFLICT_ATTEMPTS = 3


async def _put_back(kind: str, key: Key, memo: kopf.Memo, logger: kopf.Logger) -> None:
    """An owned object was deleted or hand-edited: render it again from its model."""
    namespace, model = key
    body = await memo.kube.get_model(namespace, model)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return  # the model is going away; so do its objects
    generation = int(body["metadata"].get("generation") or 0)
    if memo.worker.reconciled.get(key) != generation:
        return  # a spec change is being reconciled: that applies the workload anyway
    spec, _ = validate(body.get("spec"), model)
    if spec is None:
        return
    uid = body["metadata"]["uid"]
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            outcome = await _apply(key, uid, generation, spec, body, memo, logger)
            break
        except ApiException as exc:
            # Written meanwhile (the scaler's replicas): read it again and retry.
            if exc.status != 409 or attempt == CONFLICT_ATTEMPTS:
                raise
    if outcome is not None and outcome[kind] != "unchanged":
        logger.info("%s %s/%s put back (%s)", kind, namespace, model, outcome[kind])
        await memo.kube.post_event(
            ModelRef.from_body(body).involved,
            "Warning",
            f"{kind}Restored",
            f"{kind} {model} was deleted or changed outside ModelPilot and has been put back; "
            "change the ModelDeployment instead",
        )


@kopf.on.event(*MD)
async def model_event(
    type: str, namespace: str | None, name: str, meta: kopf.Meta, memo: kopf.Memo, **_: Any
) -> None:
    """Routing follows the spec and status (minReplicas in force); a fresh stamp from the
    activator wakes the model at once."""
    key = _key(namespace, name)
    memo.router.wake(key)
    annotations = meta.get("annotations") or {}
    stamp = annotations.get(ACTIVATION_ANNOTATION)
    held = _count(annotations.get(HELD_ANNOTATION))
    seen = memo.setdefault("activations", {})
    if type != "DELETED" and stamp and seen.get(key) != (stamp, held):
        seen[key] = (stamp, held)
        at = parse_time(stamp)
        # Stamps from before a restart (or a skewed clock) are not demand now.
        if at is not None and abs(time.time() - at.timestamp()) <= ACTIVATION_FRESH_SECONDS:
            memo.scaler.activate(key, held)


def _count(text: str | None) -> int:
    """The activator's held count (annotations are anyone's to write: 1 unless readable)."""
    try:
        return max(1, min(int(text or 1), 1_000_000))
    except ValueError:
        return 1


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
async def deployment_event(
    type: str,
    body: kopf.Body,
    namespace: str | None,
    labels: kopf.Labels,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    key = _key(namespace, labels[MODEL_LABEL])
    memo.worker.wake(key)
    memo.router.wake(key)  # routing follows the replicas asked for (to zero: the activator)
    # Only spec changes (generation) can be drift, and only those we did not write.
    generation = body["metadata"].get("generation")
    seen = memo.setdefault("deployment_generations", {})
    if type == "DELETED" or (
        seen.get(key) != generation and not memo.applier.wrote(key, generation)
    ):
        seen[key] = generation
        await _put_back("Deployment", key, memo, logger)


@kopf.on.event("v1", "services", labels=MANAGED)
async def service_event(
    type: str,
    namespace: str | None,
    labels: kopf.Labels,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    if type in ("DELETED", "MODIFIED"):
        await _put_back("Service", _key(namespace, labels[MODEL_LABEL]), memo, logger)
