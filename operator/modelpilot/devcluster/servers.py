"""The operator, the fake model server and the meter as real processes on loopback (tests,
benchmarks, the demo)."""

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from modelpilot.devcluster.controlplane import REPO_ROOT
from modelpilot.devcluster.ports import pick_port
from modelpilot.devcluster.processes import memory_kib, wait_until

SAMPLE_MODEL = REPO_ROOT / "examples" / "sample-model" / "server.py"


def _get(url: str, timeout: float = 2) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def flags(**options: object) -> list[str]:
    """--name=value for each option; a True option is a bare --name, a False one --no-name."""
    out = []
    for key, value in options.items():
        name = key.replace("_", "-")
        if isinstance(value, bool):
            out.append(f"--{name}" if value else f"--no-{name}")
        else:
            out.append(f"--{name}={value}")
    return out


Scraped = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Scraped:
    """A /metrics page: (name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(_get(url)[1])
        for s in family.samples
    }


def value(scraped: Scraped, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in scraped.items() if n == name and wanted <= ls)


class Process:
    def __init__(
        self,
        args: list[str],
        log: Path,
        ready_url: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 20,
    ) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        if not wait_until(lambda: _get(ready_url)[0] == 200, timeout, interval=0.05):
            self.stop()
            raise RuntimeError(f"{args[2:4]} did not start:\n{log.read_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def rss_kib(self) -> int:
        return memory_kib(self.proc.pid)

    def rss_peak_kib(self) -> int:
        return memory_kib(self.proc.pid, "VmHWM")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a node failure or an OOM kill would end it."""
        self.proc.kill()
        self.proc.wait(timeout=10)


class OperatorProcess(Process):
    """`modelpilot run` under the identity of `kubeconfig`, ready once /healthz answers."""

    def __init__(self, log: Path, kubeconfig: Path, **options: object) -> None:
        metrics_port, health_port = pick_port(), pick_port()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.health_url = f"http://127.0.0.1:{health_port}/healthz"
        args = [
            sys.executable,
            "-m",
            "modelpilot",
            "run",
            f"--metrics-address=127.0.0.1:{metrics_port}",
            f"--health-address=127.0.0.1:{health_port}",
            *flags(**options),
        ]
        super().__init__(
            args,
            log,
            f"http://127.0.0.1:{health_port}/healthz",
            env={"KUBECONFIG": str(kubeconfig)},
            timeout=30,
        )

    def health(self) -> dict[str, object]:
        """/healthz: {"leader": bool, "identity": str, "lease": "namespace/name"}."""
        status, body = _get(self.health_url)
        return json.loads(body) if status == 200 else {}


class ActivatorProcess(Process):
    """`modelpilot activator` on loopback address `host` (an activator pod's IP in the
    tests), ready once both its watches have listed."""

    def __init__(self, log: Path, kubeconfig: Path, host: str, **options: object) -> None:
        metrics_port = pick_port()
        self.host = host
        self.metrics_url = f"http://{host}:{metrics_port}/metrics"
        args = [
            sys.executable,
            "-m",
            "modelpilot",
            "activator",
            f"--host={host}",
            f"--metrics-address={host}:{metrics_port}",
            *flags(**options),
        ]
        super().__init__(
            args,
            log,
            f"http://{host}:{metrics_port}/readyz",
            env={"KUBECONFIG": str(kubeconfig)},
            timeout=30,
        )

    def value(self, name: str, **labels: str) -> float:
        return value(scrape(self.metrics_url), name, **labels)


class FakeModelProcess(Process):
    def __init__(self, workdir: Path, port: int | None = None, **options: object) -> None:
        self.port = port or pick_port()  # a port: start again where a killed one listened
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, str(SAMPLE_MODEL), f"--port={self.port}"]
        args += flags(**options)
        super().__init__(args, workdir / f"model-{self.port}.log", f"{self.url}/health")

    def stats(self) -> dict[str, int]:
        stats: dict[str, int] = json.loads(_get(f"{self.url}/stats")[1])
        return stats


class MeterProcess(Process):
    def __init__(self, workdir: Path, upstream: str, **options: object) -> None:
        self.port, self.metrics_port = pick_port(), pick_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.metrics_port}"
        args = [
            sys.executable,
            "-m",
            "modelpilot",
            "meter",
            f"--listen=127.0.0.1:{self.port}",
            f"--metrics-listen=127.0.0.1:{self.metrics_port}",
            f"--upstream={upstream}",
            "--model-deployment=chat",
        ]
        args += flags(**options)
        super().__init__(args, workdir / f"meter-{self.port}.log", f"{self.admin}/healthz")

    def readyz(self) -> int:
        return _get(f"{self.admin}/readyz")[0]

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return scrape(f"{self.admin}/metrics")

    def value(self, name: str, **labels: str) -> float:
        return value(self.scrape(), name, **labels)
