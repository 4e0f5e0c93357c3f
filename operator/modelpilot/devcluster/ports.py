"""Loopback port choice: a preferred port when it is free, any free one otherwise."""

import socket


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(
    preferred: int | None = None, host: str = "127.0.0.1", avoid: frozenset[int] = frozenset()
) -> int:
    """`preferred` if it can be bound now, else a free port the kernel hands out.

    `avoid` holds ports already chosen for siblings that have not bound them yet.
    """
    if preferred and preferred not in avoid and is_free(preferred, host):
        return preferred
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in avoid:
            return port
