"""`modelpilot meter` with bad flags: one usage line naming each bad flag, no traceback."""

import pytest
from click.testing import CliRunner

from modelpilot.cli import main
from modelpilot.meter.config import MeterConfig


@pytest.mark.parametrize("url", ["https://127.0.0.1:8000", "127.0.0.1:8000", "http://"])
def test_the_upstream_is_plain_http_to_a_host(url: str) -> None:
    with pytest.raises(ValueError, match="must be http://HOST"):
        MeterConfig(model_deployment="chat", upstream=url)
    assert MeterConfig(model_deployment="chat", upstream="http://127.0.0.1:8000/v1").upstream


def test_bad_flags_get_one_usage_line_each_named() -> None:
    result = CliRunner().invoke(
        main,
        ["meter", "--model-deployment", "chat", "--upstream", "https://m:1", "--max-queue", "-1"],
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1
    assert "--upstream: Value error, must be http://HOST" in error[0]
    assert "--max-queue: Input should be greater than or equal to 0" in error[0]
