"""Status classes for HTTP status codes and WebSocket close codes."""

# Not HTTP: nginx's convention for "client closed the request before the answer".
CLIENT_CLOSED = 499


def http_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "5xx"


def websocket_class(close_code: int) -> str:
    """1000 (normal) and 1001 (going away) succeed; protocol, data and policy errors and
    oversized messages are the client's (4xx); abnormal closure, internal errors and the
    rest are the server's (5xx). Application codes 4000-4999 count as the client's."""
    if close_code in (1000, 1001):
        return "2xx"
    if close_code in (1002, 1003, 1007, 1008, 1009, 1010) or 4000 <= close_code <= 4999:
        return "4xx"
    return "5xx"
