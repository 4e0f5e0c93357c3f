"""Start detached server processes and stop exactly the ones we started."""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def spawn(cmd: Sequence[str], log_path: Path, cwd: Path | None = None) -> int:
    """Start `cmd` in its own session (it outlives `make cluster-up`), output to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    return proc.pid


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory from /proc: now (VmRSS) or at its peak (VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field)))


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_quiet(pid: int, timeout: float, share: float = 0.05, over: float = 1.0) -> bool:
    """Wait until a process uses under `share` of a core over `over` seconds (a server done
    with its start-up work: a benchmark then measures its own work, not that)."""

    def quiet() -> bool:
        before = cpu_seconds(pid)
        time.sleep(over)
        return cpu_seconds(pid) - before < share * over

    return wait_until(quiet, timeout, interval=0.0)


def _reap(pid: int) -> None:
    # Our own children would linger as zombies (and look alive) until waited for.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_running(pid: int, expected_exe: str | None = None) -> bool:
    """Whether `pid` is alive and, if given, still runs `expected_exe` (guards PID reuse)."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # "PID (comm) STATE ...": comm is the executable's name (15 chars at most), set at exec.
    comm, rest = stat.split(" (", 1)[1].rsplit(") ", 1)
    if rest.split()[0] == "Z":
        return False
    return expected_exe is None or comm == Path(expected_exe).name[:15]


def stop(pid: int, expected_exe: str | None = None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; a PID that now runs something else is left alone."""
    if not is_running(pid, expected_exe):
        return
    os.kill(pid, signal.SIGTERM)
    if wait_until(lambda: not is_running(pid), timeout):
        return
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not is_running(pid), 5.0)


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
