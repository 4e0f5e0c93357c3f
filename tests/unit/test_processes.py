import subprocess
from pathlib import Path

from modelpilot.devcluster.processes import is_running, log_tail, spawn, stop


def test_stop_leaves_a_pid_that_runs_something_else_alone(tmp_path: Path) -> None:
    pid = spawn(["sleep", "30"], tmp_path / "sleep.log")
    try:
        assert is_running(pid, "sleep")
        # A recorded PID now reused by another program must not be killed.
        assert not is_running(pid, "etcd")
        stop(pid, "etcd")
        assert is_running(pid, "sleep")
        stop(pid, "sleep")
        assert not is_running(pid)
    finally:
        subprocess.run(["kill", "-9", str(pid)], capture_output=True)


def test_log_tail_keeps_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("\n".join(str(i) for i in range(100)))
    assert log_tail(log, 3) == "97\n98\n99"
    assert log_tail(tmp_path / "missing.log") == "(no log)"
