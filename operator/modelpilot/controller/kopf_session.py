"""kopf's connection to the API server, with a bound on its connections.

kopf's own session opens as many connections as it has requests in flight. At start-up it
patches every ModelDeployment at once (finalizer, progress annotations), each on a new TLS
connection, and asyncio gives every TLS connection a 256 KiB read buffer: at 1,000 models
that alone was a quarter of a GiB, kept by the allocator after the burst. Bounded, the same
patches queue for a connection and reuse it.
"""

import aiohttp
import kopf

# kopf keeps one watch stream open per watched resource and namespace (ModelDeployments,
# Deployments, Services, HPAs; pods have their own, `pod_watch`), each on its connection.
WATCHED_RESOURCES = 4
# Connections for everything else: patches, the re-reads after a conflict, list chunks.
REQUESTS = 16


def connection_limit(namespaces: list[str]) -> int:
    """Room for every watch stream (one set per namespace served, or one cluster-wide) and
    `REQUESTS` more: a watch must never wait for a connection."""
    return WATCHED_RESOURCES * max(len(namespaces), 1) + REQUESTS


def session_for(info: kopf.ConnectionInfo, limit: int) -> aiohttp.ClientSession:
    """The session kopf would build from `info`, with at most `limit` connections."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        trust_env=info.trust_env,
    )


def bounded(info: kopf.ConnectionInfo, limit: int) -> kopf.AiohttpSession:
    """kopf's credentials for `info`, on a session of at most `limit` connections."""
    return kopf.AiohttpSession(
        aiohttp_session=session_for(info, limit),
        server=info.server,
        default_namespace=info.default_namespace,
        priority=info.priority,
        expiration=info.expiration,
    )
