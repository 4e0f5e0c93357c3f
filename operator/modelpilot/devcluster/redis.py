"""A real Redis (Debian's redis-server) on loopback: the async queue's broker in tests,
benchmarks and the local cluster. Persistence is on (append-only file, fsync on every
write), so a broker killed and started again keeps every acknowledged request."""

import shutil
import signal
import socket
import subprocess
from pathlib import Path

from modelpilot.devcluster.ports import pick_port
from modelpilot.devcluster.processes import log_tail, wait_until


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is missing: `make setup` installs it")
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or pick_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = self.dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> "RedisServer":
        args = [
            str(self.binary),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        if not wait_until(lambda: _answers(self.port), 20, interval=0.05):
            self.stop()
            raise RuntimeError(f"redis-server did not start:\n{log_tail(self.log)}")
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown save; only what the append-only file holds survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
