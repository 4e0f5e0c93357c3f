"""Real Prometheus servers on loopback: live scraping, and history backfilled with promtool.

Tests, benchmarks and the demo replay metric histories by writing OpenMetrics text,
turning it into TSDB blocks with `promtool tsdb create-blocks-from openmetrics`, and
starting a Prometheus on those blocks.
"""

import json
import math
import re
import shutil
import subprocess
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from modelpilot.devcluster.binaries import find_binary
from modelpilot.devcluster.ports import pick_port
from modelpilot.devcluster.processes import is_running, log_tail, spawn, stop, wait_until


class Series(BaseModel):
    """One time series: a metric name, its labels, and (unix seconds, value) samples."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    samples: list[tuple[float, float]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def to_openmetrics(series: Iterable[Series]) -> str:
    """OpenMetrics text for promtool: one family per metric name, samples in time order."""
    families: dict[str, list[Series]] = defaultdict(list)
    for one in series:
        families[one.name].append(one)
    lines: list[str] = []
    for name, members in families.items():
        # Type "unknown" stores samples as given; promtool keeps no metadata anyway, and it
        # lets counters, histogram buckets and gauges share one writer.
        lines.append(f"# TYPE {name} unknown")
        for one in members:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(one.labels.items()))
            head = f"{name}{{{labels}}}" if labels else name
            lines.extend(
                f"{head} {_format_value(value)} {ts:.3f}" for ts, value in sorted(one.samples)
            )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def backfill(openmetrics: str, data_dir: Path) -> None:
    """Write `openmetrics` into TSDB blocks under `data_dir` (a Prometheus storage path)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    source = data_dir.parent / f"{data_dir.name}.om"
    source.write_text(openmetrics)
    result = subprocess.run(
        [
            find_binary("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(source),
            str(data_dir),
        ],
        capture_output=True,
        text=True,
    )
    source.unlink()
    if result.returncode != 0:
        raise RuntimeError(f"promtool backfill failed: {result.stderr.strip() or result.stdout}")


def recording_rules(prometheusrule: Path, dest: Path) -> Path:
    """The recording-rule groups of a PrometheusRule manifest as a plain rule file."""
    spec = yaml.safe_load(prometheusrule.read_text())["spec"]
    groups = [g for g in spec["groups"] if all("record" in r for r in g["rules"])]
    dest.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return dest


def backfill_rules(server: "PrometheusServer", rule_file: Path, start: float, end: float) -> None:
    """Evaluate `rule_file`'s recording rules over [start, end] against the running `server`
    (`promtool tsdb create-blocks-from rules`), as if it had been recording all along; the
    server restarts to load the blocks."""
    out = server.workdir / "rule-blocks"
    for _ in range(3):
        shutil.rmtree(out, ignore_errors=True)
        result = subprocess.run(
            [
                find_binary("promtool"),
                "tsdb",
                "create-blocks-from",
                "rules",
                f"--start={int(start)}",
                f"--end={int(end)}",
                f"--url={server.url}",
                f"--output-dir={out}",
                str(rule_file),
            ],
            capture_output=True,
            text=True,
        )
        # promtool queries the server: on a busy machine a query can fail, and it then exits
        # with an error, or logs it and exits 0 with no blocks written. Ask again.
        if result.returncode == 0 and out.is_dir():
            break
    else:
        raise RuntimeError(
            f"promtool rules backfill failed (exit {result.returncode}, three tries): "
            f"{result.stderr.strip()[-2000:]}"
        )
    server.stop()
    for block in out.iterdir():
        block.rename(server.data_dir / block.name)
    out.rmdir()
    server.start()


def scrape_config(
    *,
    interval_seconds: float = 2,
    static_targets: Mapping[str, Sequence[str]] | None = None,
    file_sd_dir: Path | None = None,
) -> dict[str, Any]:
    """A prometheus.yml: `static_targets` maps a job name to host:port targets; `file_sd_dir`
    adds a job whose targets are the `*.json` files dropped there (picked up live)."""
    jobs: list[dict[str, Any]] = [
        {"job_name": job, "honor_labels": True, "static_configs": [{"targets": list(targets)}]}
        for job, targets in (static_targets or {}).items()
    ]
    if file_sd_dir is not None:
        jobs.append(
            {
                "job_name": "modelpilot-local",
                "honor_labels": True,
                "file_sd_configs": [
                    {"files": [str(file_sd_dir / "*.json")], "refresh_interval": "5s"}
                ],
            }
        )
    interval = f"{interval_seconds}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": jobs,
    }


def readme_scrape_jobs(readme: Path, discovery: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The scrape jobs the README gives users (its YAML blocks with a job discovering pods),
    with `kubernetes_sd_configs` swapped for `discovery` (see devcluster/discovery.py); the
    relabel rules stay exactly as users copy them."""
    jobs = []
    for block in re.findall(r"```yaml\n(.*?)```", readme.read_text(), flags=re.S):
        if "job_name:" not in block or "kubernetes_sd_configs" not in block:
            continue
        loaded = yaml.safe_load(block)
        for job in loaded["scrape_configs"] if isinstance(loaded, dict) else loaded:
            del job["kubernetes_sd_configs"]
            jobs.append({**job, **discovery})
    return jobs


class PrometheusServer:
    """One Prometheus process on loopback over `data_dir`."""

    def __init__(
        self,
        workdir: Path,
        config: Mapping[str, Any] | None = None,
        port: int | None = None,
        data_dir: Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.workdir = workdir
        self.host = host
        self.data_dir = data_dir or workdir / "data"
        self.config = config or scrape_config()
        self.port = port or pick_port(host=host)
        self.log_path = workdir / "prometheus.log"
        self.pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> "PrometheusServer":
        binary = find_binary("prometheus")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(dict(self.config), sort_keys=False))
        self.pid = spawn(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self.data_dir}",
                f"--web.listen-address={self.host}:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=30d",
                "--log.level=warn",
            ],
            self.log_path,
        )
        if not wait_until(self.ready, timeout, interval=0.2):
            self.stop()
            raise RuntimeError(
                f"prometheus did not get ready in {timeout:.0f}s:\n{log_tail(self.log_path)}"
            )
        return self

    def ready(self) -> bool:
        if self.pid is None or not is_running(self.pid):
            return False
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def targets_up(self) -> bool:
        """Whether every configured scrape target has been scraped successfully. Prometheus
        hands new targets to its scrapers about 5 s after start (discovery throttling)."""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=2) as resp:
                active = json.load(resp)["data"]["activeTargets"]
        except OSError:
            return False
        wanted = sum(
            len(c["targets"])
            for job in self.config.get("scrape_configs", [])
            for c in job.get("static_configs", [])
        )
        return len(active) >= wanted and all(t["health"] == "up" for t in active)

    def reload(self) -> None:
        """Re-read the config (after `self.config` changed)."""
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(dict(self.config)))
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        urllib.request.urlopen(req, timeout=5).close()

    def stop(self) -> None:
        if self.pid is not None:
            stop(self.pid, "prometheus")
            self.pid = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
