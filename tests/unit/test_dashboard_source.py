import json
from pathlib import Path

from modelpilot.report.panels import PANELS, dashboard

COMMITTED = Path(__file__).resolve().parents[2] / "manifests" / "monitoring" / "dashboard.json"


def test_committed_dashboard_is_generated_from_the_panels() -> None:
    # Regenerate with: python -m modelpilot.report.panels > manifests/monitoring/dashboard.json
    assert json.loads(COMMITTED.read_text()) == dashboard()
    assert len(dashboard()["panels"]) == len(PANELS)
