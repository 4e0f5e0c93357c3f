"""`make demo`: the whole product on one machine.

A local control plane (etcd, kube-apiserver, kube-controller-manager, Prometheus) with a real
node (containerd, kubelet, kube-proxy, kube-scheduler), ModelPilot installed on it from
manifests/ (the operator and the activator run as pods under their ServiceAccounts), the
sample ModelDeployment and bursty traffic through its Service. It watches in Recommend mode
until the advisor speaks, switches the model to Auto, and compares before and after.
Everything it started is stopped at the end.
"""

import asyncio
import json
import shutil
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from kubernetes import client, config

from modelpilot.api import GROUP, PLURAL, VERSION
from modelpilot.demo.traffic import Outcome, Pattern, Traffic
from modelpilot.demo.view import (
    Frame,
    PeriodStats,
    ScaleEvent,
    applied_changes,
    comparison,
    fit,
    period_stats,
    recommendation_lines,
    render,
    settings_line,
)
from modelpilot.demo.zero import MANIFEST as ZERO_MANIFEST
from modelpilot.demo.zero import ZeroModel
from modelpilot.devcluster import controlplane, install, node
from modelpilot.devcluster.controlplane import REPO_ROOT, ClusterState
from modelpilot.devcluster.kubectl import kubectl
from modelpilot.devcluster.processes import wait_until
from modelpilot.times import clock
from modelpilot.times import milliseconds as ms

NAMESPACE = "demo"
MANIFEST = REPO_ROOT / "examples" / "sample-model" / "sample-chat.yaml"
SAMPLE_IMAGE = "ghcr.io/modelpilot/sample-model:0.1.0"  # what the examples name
SCRAPE_SECONDS = 2  # the local Prometheus' scrape interval
# The operator at demo speed: scaling every 2 s, and the advisor on minutes of history at
# 3 s resolution instead of hours at 60 s (it waits for 20 points after each change it
# makes: 60 s here). Everything else is manifests/operator.yaml's.
DEMO_SPEED = [
    "--scaler-interval=2",
    "--resync-seconds=5",
    "--advisor-interval=10",
    "--advisor-lookback=150s",
    "--advisor-step=3s",
    f"--scrape-interval={SCRAPE_SECONDS}s",
]


def operator_args() -> list[str]:
    deployment = next(
        d
        for d in yaml.safe_load_all((REPO_ROOT / "manifests" / "operator.yaml").read_text())
        if d["kind"] == "Deployment"
    )
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args + DEMO_SPEED


def with_image(manifest: Path, images: dict[str, str]) -> str:
    """The example as users apply it, naming the sample model's image built here."""
    return manifest.read_text().replace(SAMPLE_IMAGE, images["modelpilot.local/sample-model"])


@dataclass
class Settings:
    minutes: float
    state_dir: Path
    live: bool  # redraw a full-screen view (a terminal) instead of printing lines
    keep_cluster: bool = False
    pattern: Pattern = field(default_factory=Pattern)


class Output:
    """A full-screen view redrawn in place on a terminal; elsewhere, a line now and then."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self.last_line = 0.0

    def say(self, text: str) -> None:
        if not self.live:
            print(fit(text), flush=True)

    def frame(self, lines: list[str], summary: str) -> None:
        if self.live:
            sys.stdout.write("\x1b[H\x1b[J" + "\n".join(lines) + "\n")
            sys.stdout.flush()
        elif time.monotonic() - self.last_line >= 10:
            self.last_line = time.monotonic()
            print(fit(summary), flush=True)


class PrometheusView:
    """The meters' last 10 seconds for one model, from Prometheus (None: unknown)."""

    def __init__(self, url: str, namespace: str, model: str) -> None:
        self.url = url
        self.match = f'{{namespace="{namespace}",model_deployment="{model}"}}'

    async def _query(self, session: aiohttp.ClientSession, promql: str) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"query": promql})
        async with session.get(f"{self.url}/api/v1/query?{params}") as resp:
            body = await resp.json()
        result: list[dict[str, Any]] = body.get("data", {}).get("result", [])
        return result

    async def read(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        unknown: dict[str, Any] = dict.fromkeys(
            ("rps", "p50", "p95", "concurrency", "ttft_p95", "tokens")
        )
        try:
            return await self._read(session)
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
            return unknown  # Prometheus busy or restarting: shown as unknown, not as zero

    async def _read(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        m = self.match
        rps, p50, p95, conc, ttft, tokens = await asyncio.gather(
            self._query(
                session, f"sum by (status_class) (rate(modelpilot_requests_total{m}[10s]))"
            ),
            self._query(session, self._quantile(0.5)),
            self._query(session, self._quantile(0.95)),
            self._query(session, f"sum(rate(modelpilot_concurrency_seconds_total{m}[10s]))"),
            self._query(session, self._quantile(0.95, "modelpilot_time_to_first_token_seconds")),
            self._query(session, f"sum by (direction) (rate(modelpilot_tokens_total{m}[10s]))"),
        )

        def scalar(result: list[dict[str, Any]]) -> float | None:
            if not result or result[0]["value"][1] in ("NaN", "+Inf"):
                return None
            return float(result[0]["value"][1])

        return {
            "rps": {r["metric"].get("status_class", "?"): float(r["value"][1]) for r in rps}
            if rps
            else None,
            "p50": scalar(p50),
            "p95": scalar(p95),
            "concurrency": scalar(conc),
            "ttft_p95": scalar(ttft),
            "tokens": {r["metric"].get("direction", "?"): float(r["value"][1]) for r in tokens}
            if tokens
            else None,
        }

    def _quantile(
        self, q: float, histogram: str = "modelpilot_end_to_end_response_time_seconds"
    ) -> str:
        return f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{self.match}[10s])))"


class ModelClient:
    """The demo's reads and writes of its model, with the admin's rights (the user's)."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self.custom, self.core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        self.namespace, self.name = namespace, name

    def read(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name
        )
        return obj

    def has_active_replica(self) -> bool:
        return bool(((self.read().get("status") or {}).get("replicas") or {}).get("active"))

    def service_address(self) -> str:
        """ClusterIP:port of the model's Service: kube-proxy spreads connections over its
        ready pods."""
        service = self.core.read_namespaced_service(self.name, self.namespace)
        return f"{service.spec.cluster_ip}:{service.spec.ports[0].port}"

    def set_mode(self, mode: str) -> dict[str, Any]:
        patch = {"spec": {"advisor": {"mode": mode}}}
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name, patch
        )
        return patch


class Demo:
    def __init__(self, settings: Settings, model: str) -> None:
        self.s, self.model = settings, model
        self.out = Output(settings.live)
        self.logs = settings.state_dir / "logs"
        self.events: list[ScaleEvent] = []
        self.replicas_trend: list[float | None] = []
        self.p95_trend: list[float | None] = []
        self.status: dict[str, Any] = {}
        self.switched_at: float | None = None
        self.applied_at: float | None = None  # when the first change was seen
        self.last_applied_at: float | None = None
        self.recs: dict[tuple[str, ...], dict[str, Any]] = {}  # each distinct one seen
        self.seen_changes = 0
        self.outcomes: list[Outcome] = []
        self.total_elapsed = 0.0

    # --- set-up --------------------------------------------------------------------------
    def start_cluster(self) -> tuple[ClusterState, dict[str, str]]:
        controlplane.down(self.s.state_dir)  # a fresh cluster every run
        self.out_print(
            "starting the local control plane (etcd, kube-apiserver, kube-controller-manager, "
            "Prometheus) and a real node (containerd, kubelet, kube-proxy, kube-scheduler)..."
        )
        state = controlplane.up(self.s.state_dir, node=True)
        self.out_print(
            "installing ModelPilot as users do: the images (built from Debian packages and "
            "requirements.lock), then kubectl apply -k manifests/ (image and Prometheus URL "
            "set for this machine, the operator at demo speed)..."
        )
        images = install.on_node(state, operator_args(), log=self.out_print)
        kubectl(state.kubeconfig, "create", "namespace", NAMESPACE)
        return state, images

    def out_print(self, text: str) -> None:
        print(fit(text), flush=True)

    # --- the run -------------------------------------------------------------------------
    async def watch(self, state: ClusterState, api: client.ApiClient) -> None:
        model = ModelClient(api, NAMESPACE, self.model)
        self.out_print(f"waiting for the first replica of {self.model} (the model loads in 8 s)...")
        if not await asyncio.to_thread(wait_until, model.has_active_replica, 90, 0.5):
            raise RuntimeError(
                f"no replica of {self.model} became ready in 90 s; see {self.logs / 'pods'}"
            )
        service = await asyncio.to_thread(model.service_address)
        traffic = Traffic(self.s.pattern, lambda: [service])
        stop = asyncio.Event()
        sender = asyncio.create_task(traffic.run(stop))
        total = self.s.minutes * 60
        prom = PrometheusView(state.prometheus_url, NAMESPACE, self.model)
        self.out_print(f"traffic: {self.s.pattern.describe()}; advisor mode Recommend")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while True:
                await asyncio.sleep(1)
                now = traffic.elapsed()
                self.status = (await asyncio.to_thread(model.read)).get("status") or {}
                await self._tick(model, now, total, await prom.read(session))
                # Past the end, wait up to a minute for Auto mode's first change.
                if now >= total and (self.applied_at is not None or now >= total + 60):
                    break
        stop.set()
        await sender
        self.outcomes = traffic.outcomes
        self.total_elapsed = traffic.elapsed()

    async def _tick(
        self, model: "ModelClient", now: float, total: float, meters: dict[str, Any]
    ) -> None:
        replicas = self.status.get("replicas") or {}
        desired = replicas.get("desired")
        last = self.replicas_trend[-1] if self.replicas_trend else None
        if last is not None and desired is not None and desired != last:
            self.events.append(ScaleEvent(now, int(last), desired))
            self.out.say(f"[{clock(now)}] scaled {last} -> {desired}")
        self.replicas_trend.append(desired if desired is not None else last)
        self.p95_trend.append(meters["p95"])
        self._announce(now)
        if self._time_to_switch(now, total):
            self.switched_at = now
            patch = await asyncio.to_thread(model.set_mode, "Auto")
            self.out.say(
                f"[{clock(now)}] switching to Auto: kubectl patch md {self.model} --type merge "
                f"-p '{json.dumps(patch)}'"
            )
        frame = Frame(
            model=f"{NAMESPACE}/{self.model}",
            phase="Auto" if self.switched_at is not None else "Recommend",
            elapsed=now,
            total=total,
            pattern=self.s.pattern.describe(),
            status=self.status,
            scale_events=self.events,
            replicas_trend=self.replicas_trend,
            p95_trend=self.p95_trend,
            **meters,
        )
        concurrency = meters["concurrency"]
        summary = (
            f"[{clock(now)}] replicas {desired} (active {replicas.get('active')}, starting "
            f"{replicas.get('starting')}) · p95 {ms(meters['p95'])} · TTFT p95 "
            f"{ms(meters['ttft_p95'])} · concurrency "
            f"{'?' if concurrency is None else round(concurrency, 1)} · "
            f"{len(self.events)} scale events"
        )
        self.out.frame(render(frame), summary)

    def _announce(self, now: float) -> None:
        advisor = self.status.get("advisor") or {}
        for rec in advisor.get("recommendations") or []:
            key = tuple(str(rec.get(k)) for k in ("setting", "reason", "current", "recommended"))
            if key not in self.recs:
                self.recs[key] = rec
                self.out.say(f"[{clock(now)}] the advisor recommends:")
                for line in recommendation_lines(rec):
                    self.out.say(line)
        changes = applied_changes(self.status)
        for change in changes[self.seen_changes :]:
            if self.applied_at is None:
                self.applied_at = now
            self.last_applied_at = now
            self.out.say(f"[{clock(now)}] Auto mode {change.get('message')}")
        self.seen_changes = max(self.seen_changes, len(changes))

    def _time_to_switch(self, now: float, total: float) -> bool:
        """To Auto once the advisor has spoken (after at least a third of the run), or at
        60% of it regardless."""
        if self.switched_at is not None:
            return False
        recs = (self.status.get("advisor") or {}).get("recommendations") or []
        return bool(recs and now >= total * 0.35) or now >= total * 0.6

    def _periods(self) -> list[tuple[str, PeriodStats]]:
        end = self.total_elapsed
        # The first burst meets one cold replica whatever the settings: left out.
        cycle = self.s.pattern.burst_seconds + self.s.pattern.quiet_seconds
        periods = [("before Auto", self._stats(cycle, self.switched_at or end))]
        if self.applied_at is not None:
            periods.append(("after the 1st change", self._stats(self.applied_at, end)))
            last = self.last_applied_at
            if last is not None and last > self.applied_at and end - last >= cycle:
                periods.append(("since the last change", self._stats(last, end)))
        return periods

    def _stats(self, start: float, end: float) -> PeriodStats:
        return period_stats(self.outcomes, self.events, start, end)

    # --- the end ---------------------------------------------------------------------------
    def report(self) -> bool:
        """The closing summary; True when it showed a recommendation and an applied change."""
        changes = applied_changes(self.status)
        print(
            "\n== What the advisor recommended during the run (status.advisor.recommendations) =="
        )
        if not self.recs:
            print("  nothing")
        for rec in self.recs.values():
            print("\n".join(recommendation_lines(rec)))
        print("\n== What Auto mode changed (status.advisor.history) ==")
        if not changes:
            print("  nothing")
        for change in changes:
            print(fit(f"  {change.get('time')}: {change.get('message')}"))
        effective = (self.status.get("autoscaling") or {}).get("effective") or {}
        print(fit(f"  effective settings now: {settings_line(effective)}"))
        if self.switched_at is not None:
            print("\n== Before and after Auto (same traffic; the first burst, on one cold replica,")
            print("   left out) ==")
            print("\n".join(comparison(self._periods())))
        return bool(self.recs) and bool(changes)


def save_logs(state: ClusterState, logs: Path) -> None:
    """The operator's log (every replica's) and each pod's container logs, kept after the
    node is gone."""
    pods_dir = logs / "pods"
    pods_dir.mkdir(parents=True, exist_ok=True)
    for folder in node.POD_LOGS.glob("*_*_*") if node.POD_LOGS.is_dir() else []:
        shutil.copytree(folder, pods_dir / folder.name, dirs_exist_ok=True)
    parts = []
    for folder in sorted(pods_dir.glob(f"{controlplane.OPERATOR_NAMESPACE}_modelpilot-operator-*")):
        for log in sorted(folder.glob("operator/*.log")):
            parts.append(f"==> {folder.name}/{log.name} <==\n{log.read_text(errors='replace')}")
    (logs / "operator.log").write_text("\n".join(parts))


def run(settings: Settings) -> int:
    doc = yaml.safe_load(MANIFEST.read_text())
    model = doc["metadata"]["name"]
    demo = Demo(settings, model)
    state: ClusterState | None = None
    ok = False
    started = time.monotonic()
    try:
        state, images = demo.start_cluster()
        api = config.new_client_from_config(config_file=str(state.kubeconfig))
        demo.out_print(
            f"operator running (2 pods, one leading); applying "
            f"{MANIFEST.relative_to(REPO_ROOT)} (image {images['modelpilot.local/sample-model']})"
        )
        for manifest in (MANIFEST, ZERO_MANIFEST):
            text = with_image(manifest, images)
            kubectl(state.kubeconfig, "-n", NAMESPACE, "apply", "-f", "-", stdin=text)
        asyncio.run(demo.watch(state, api))
        woke = asyncio.run(ZeroModel(api, NAMESPACE, demo.out_print).wake())
        ok = demo.report() and woke
        if not ok:
            print(
                fit(
                    "\nThe demo did not see both a recommendation and an applied change; the "
                    f"operator's log says why: {demo.logs / 'operator.log'}"
                )
            )
        final = kubectl(state.kubeconfig, "get", "md", model, "-n", NAMESPACE, "-o", "yaml")
        (demo.logs / f"{model}.yaml").write_text(final)
    except KeyboardInterrupt:
        print("\ninterrupted")
    except Exception as exc:  # set-up failures: say what and where to look
        print(f"\nerror: {exc}", file=sys.stderr)
    finally:
        if state is not None:
            save_logs(state, demo.logs)
        if state is not None and not settings.keep_cluster:
            controlplane.down(settings.state_dir)
        if settings.keep_cluster:
            demo.out_print(
                f"\nthe control plane is still up: KUBECONFIG={settings.state_dir}/kubeconfig; "
                f"stop it: python -m modelpilot.devcluster down --state-dir {settings.state_dir}"
            )
        else:
            spent = clock(time.monotonic() - started)
            print(f"\nstopped everything the demo started ({spent} in all).")
        demo.out_print(
            f"logs: {demo.logs} (operator.log, pods/<pod>/<container>/N.log, the control "
            f"plane's, and {model}.yaml: the ModelDeployment as it ended)"
        )
    return 0 if ok else 1
