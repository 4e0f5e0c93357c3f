"""The Prometheus helpers: backfilled history and live scraping, read with
prometheus-api-client as the advisor and scaler will."""

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer

import pytest
from prometheus_api_client import PrometheusConnect
from prometheus_client import CollectorRegistry, Counter, MetricsHandler

from modelpilot.devcluster import controlplane
from modelpilot.devcluster.processes import wait_until
from modelpilot.devcluster.prometheus import PrometheusServer, Series


def test_backfilled_history_is_read_back(
    prometheus_with_history: Callable[[list[Series]], PrometheusServer],
) -> None:
    end = int(time.time()) - 60
    start = end - 3600
    # A counter growing 2/s for one model, 0.5/s for another, sampled every 15 s.
    series = [
        Series(
            name="modelpilot_concurrency_seconds_total",
            labels={"namespace": "ns", "model_deployment": md, "pod": f"{md}-0", "state": "active"},
            samples=[(t, rate * (t - start)) for t in range(start, end + 1, 15)],
        )
        for md, rate in (("fast", 2.0), ("slow", 0.5))
    ]
    server = prometheus_with_history(series)
    prom = PrometheusConnect(url=server.url, disable_ssl=True)
    result = prom.custom_query_range(
        "sum by (model_deployment) (rate(modelpilot_concurrency_seconds_total[5m]))",
        start_time=datetime.fromtimestamp(start + 600, UTC),
        end_time=datetime.fromtimestamp(end, UTC),
        step="60",
    )
    rates = {r["metric"]["model_deployment"]: [float(v) for _, v in r["values"]] for r in result}
    assert set(rates) == {"fast", "slow"}
    assert len(rates["fast"]) >= 45
    assert all(v == pytest.approx(2.0) for v in rates["fast"])
    assert all(v == pytest.approx(0.5) for v in rates["slow"])


@pytest.fixture
def metrics_server() -> Iterator[tuple[str, Counter]]:
    registry = CollectorRegistry()
    counter = Counter("smoke_requests", "Requests.", ["model_deployment"], registry=registry)
    server = ThreadingHTTPServer(("127.0.0.1", 0), MetricsHandler.factory(registry))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", counter
    server.shutdown()


def test_live_scrape_with_a_static_config(
    prometheus_scraping: Callable[..., PrometheusServer], metrics_server: tuple[str, Counter]
) -> None:
    target, counter = metrics_server
    counter.labels("m").inc(7)
    prom = PrometheusConnect(url=prometheus_scraping({"smoke": [target]}).url, disable_ssl=True)

    def scraped() -> bool:
        result = prom.custom_query('smoke_requests_total{model_deployment="m"}')
        return bool(result) and float(result[0]["value"][1]) == 7.0

    assert wait_until(scraped, 20, interval=0.5)


def test_cluster_prometheus_scrapes_dropped_targets(
    cluster: controlplane.ClusterState, metrics_server: tuple[str, Counter]
) -> None:
    target, counter = metrics_server
    counter.labels("dropped").inc(3)
    path = cluster.prometheus_targets_dir / f"smoke-{target.replace(':', '-')}.json"
    path.write_text(json.dumps([{"targets": [target], "labels": {"component": "smoke"}}]))
    prom = PrometheusConnect(url=cluster.prometheus_url, disable_ssl=True)
    try:
        assert wait_until(
            lambda: bool(prom.custom_query('smoke_requests_total{model_deployment="dropped"}')),
            30,
            interval=0.5,
        )
    finally:
        path.unlink()
