"""`modelpilot report` from a backfilled history: every panel present, charts embedded,
no-data panels labelled, the recommendation with its evidence; a headless Chromium
screenshot is kept in artifacts/ to look at."""

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from modelpilot.devcluster.prometheus import PrometheusServer, backfill, to_openmetrics
from modelpilot.devcluster.scenarios import catalogue, series, simulate
from modelpilot.report.panels import PANELS

from .test_dashboard import MODEL, NS, extras

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
SCENARIO = next(s for s in catalogue() if s.name == MODEL)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    end = time.time() - 30
    start = end - 3 * 3600
    # No cAdvisor series: the CPU and memory panels must say "no data", not draw zero.
    data = series(simulate(SCENARIO, 3 * 3600), start, NS, MODEL) + [
        s for s in extras(start, end) if not s.name.startswith("container_")
    ]
    server = PrometheusServer(tmp_path_factory.mktemp("report") / "prometheus")
    backfill(to_openmetrics(data), server.data_dir)
    server.start()
    yield server
    server.stop()


def test_report_file(prometheus: PrometheusServer, tmp_path: Path) -> None:
    manifest = tmp_path / "model.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "modelpilot.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": MODEL, "namespace": NS},
                "spec": {
                    "port": 8000,
                    "autoscaling": SCENARIO.settings.wire(),
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "model",
                                    "image": "m:1",
                                    "ports": [{"containerPort": 8000}],
                                }
                            ]
                        }
                    },
                },
            }
        )
    )
    out = tmp_path / "report.html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelpilot",
            "report",
            MODEL,
            "-n",
            NS,
            "--from-file",
            str(manifest),
            "--prometheus-url",
            prometheus.url,
            "--since",
            "3h",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    page = out.read_text()

    panels = re.findall(r'data-panel="([^"]+)"', page)
    assert panels == [p.title for p in PANELS]
    no_data = re.findall(
        r'data-panel="([^"]+)"><h3>[^<]*</h3><p>[^<]*</p><div class="nodata">'
        r"no data</div>",
        page,
    )
    assert set(no_data) == {"CPU usage", "Memory usage"}
    assert page.count("data:image/png;base64,") == len(PANELS) - 2
    assert "http://" not in page.split("<body>", 1)[1]  # self-contained: nothing to fetch
    # The thrash diagnosis, as its own recommendation or covered by a cheaper change it was
    # replayed together with (which one wins depends on how the grid falls on the bursts).
    reasons = re.findall(r'data-reason="(\w+)"', page)
    assert "Thrash" in reasons or "this also does what Thrash" in page, reasons
    assert "<table><tr><th>" in page  # the evidence table
    assert "Red lines: the scale events the evidence counts" in page

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium for the screenshot (make setup installs it)")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--window-size=1400,2600",
            f"--screenshot={shot}",
            out.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 50_000
    shutil.copy(out, ARTIFACTS / "report.html")
