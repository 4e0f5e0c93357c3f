"""The durable async queue on Redis Streams: one stream per priority per model, read by all
of the model's meters through one consumer group.

Why Redis Streams: most clusters already run Redis; a consumer group hands each entry to one
meter and keeps it in that meter's pending list until acknowledged, so work taken by a meter
that dies is still there to take again (XPENDING ... IDLE finds it once the meter has stopped
renewing it: the visibility timeout). Each state change is one Lua script, so the job's
record, its stream entry and the queued count never disagree, even across a broker restart
with persistence on.

Keys share one hash tag per model ({namespace/model}), so a model's keys live on one node.
"""

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ResponseError

PRIORITIES = ("high", "normal", "low")
GROUP = "meters"
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "EXPIRED", "CANCELED"})

# Shared by the scripts that take an entry: XPENDING ... IDLE finds the oldest entry whose
# holder stopped renewing it; else XREADGROUP takes a new one. Returns {entry, job id} or nil.
_CLAIM = """
local function claim(stream, consumer, idle)
  local stale = redis.call('XPENDING', stream, 'meters', 'IDLE', idle, '-', '+', 1)
  if #stale > 0 then
    local entry = stale[1][1]
    local got = redis.call('XCLAIM', stream, 'meters', consumer, idle, entry)
    if #got == 0 or type(got[1]) ~= 'table' then  -- the entry itself is gone
      redis.call('XACK', stream, 'meters', entry)
      return {entry, false}
    end
    return {entry, got[1][2][2]}
  end
  local new = redis.call('XREADGROUP', 'GROUP', 'meters', consumer, 'COUNT', 1,
                         'STREAMS', stream, '>')
  if not new then return nil end
  return {new[1][2][1][1], new[1][2][1][2][2]}
end
local function drop(stream, entry)
  redis.call('XACK', stream, 'meters', entry)
  redis.call('XDEL', stream, entry)
end
"""

# KEYS: job, stream, queued, idempotency key ('' for none)
# ARGV: id, job ttl, idempotency ttl, field, value, ...
_SUBMIT = """
if KEYS[4] ~= '' then
  local prior = redis.call('GET', KEYS[4])
  if prior then return prior end
  redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[3])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
redis.call('INCR', KEYS[3])
return ARGV[1]
"""

# KEYS: high, normal, low, queued, hooks
# ARGV: key prefix, consumer, now, visibility ms, max attempts, retention
# Returns {priority index, entry, id, fresh, attempts, method, path, headers, body, enqueued}
# for the first runnable job in priority order; entries that must not run (canceled,
# expired, out of attempts) are settled on the way.
_TAKE = (
    _CLAIM
    + """
local function settle(stream, entry, id, job, state, why)
  redis.call('HSET', job, 'state', state, 'finished', ARGV[3], 'error', why)
  redis.call('HDEL', job, 'body', 'headers')
  redis.call('EXPIRE', job, ARGV[6])
  drop(stream, entry)
  if (redis.call('HGET', job, 'webhook') or '') ~= '' then
    redis.call('XADD', KEYS[5], '*', 'id', id)
  end
end
for i = 1, 3 do
  local stream = KEYS[i]
  while true do
    local got = claim(stream, ARGV[2], ARGV[4])
    if not got then break end
    local entry, id = got[1], got[2]
    if id then
      local job = ARGV[1] .. ':job:' .. id
      local f = redis.call('HMGET', job, 'state', 'deadline')
      local state = f[1]
      if state == 'QUEUED' then redis.call('DECR', KEYS[4]) end
      if state ~= 'QUEUED' and state ~= 'IN_PROGRESS' then
        drop(stream, entry)  -- gone, canceled, or finished by a meter that was slow
      elseif state == 'QUEUED' and tonumber(f[2]) < tonumber(ARGV[3]) then
        settle(stream, entry, id, job, 'EXPIRED', 'waited past its maximum time in queue')
      else
        if tonumber(redis.call('HGET', job, 'attempts') or 0) >= tonumber(ARGV[5]) then
          local last = redis.call('HGET', job, 'error') or ''
          if last == '' then last = 'the meter running it stopped' end
          settle(stream, entry, id, job, 'FAILED',
                 'gave up after ' .. ARGV[5] .. ' attempts; the last: ' .. last)
        else
          local attempts = redis.call('HINCRBY', job, 'attempts', 1)
          redis.call('HSET', job, 'state', 'IN_PROGRESS', 'started', ARGV[3])
          local r = redis.call('HMGET', job, 'method', 'path', 'headers', 'body', 'enqueued')
          return {i, entry, id, state == 'QUEUED' and 1 or 0, attempts,
                  r[1], r[2], r[3], r[4], r[5]}
        end
      end
    end
  end
end
return nil
"""
)

# KEYS: stream, job, hooks   ARGV: entry, id, state, status, content type, result, now,
# retention, error. Only the first finish counts (a reclaimed job may finish twice).
_FINISH = """
local f = redis.call('HMGET', KEYS[2], 'state', 'webhook')
redis.call('XACK', KEYS[1], 'meters', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
if f[1] ~= 'IN_PROGRESS' then return 0 end
redis.call('HSET', KEYS[2], 'state', ARGV[3], 'status', ARGV[4], 'ctype', ARGV[5],
           'result', ARGV[6], 'finished', ARGV[7], 'error', ARGV[9])
redis.call('HDEL', KEYS[2], 'body', 'headers')
redis.call('EXPIRE', KEYS[2], ARGV[8])
if (f[2] or '') ~= '' then redis.call('XADD', KEYS[3], '*', 'id', ARGV[2]) end
return 1
"""

# KEYS: stream   ARGV: entry, consumer. Renew our hold on an entry (resets its idle time).
_RENEW = """
local p = redis.call('XPENDING', KEYS[1], 'meters', ARGV[1], ARGV[1], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], 'meters', ARGV[2], 0, ARGV[1], 'JUSTID')
return 1
"""

# KEYS: job, queued   ARGV: now, retention. Only a queued job can be canceled.
_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return nil end
if state ~= 'QUEUED' then return state end
redis.call('HSET', KEYS[1], 'state', 'CANCELED', 'finished', ARGV[1])
redis.call('HDEL', KEYS[1], 'body', 'headers')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('DECR', KEYS[2])
return 'CANCELED'
"""

# KEYS: hooks   ARGV: key prefix, consumer, visibility ms
# Returns {entry, id, attempts so far, webhook, state, status, content type, result, error}.
_TAKE_HOOK = (
    _CLAIM
    + """
while true do
  local got = claim(KEYS[1], ARGV[2], ARGV[3])
  if not got then return nil end
  local entry, id = got[1], got[2]
  if id then
    local job = ARGV[1] .. ':job:' .. id
    if redis.call('EXISTS', job) == 1 then
      local r = redis.call('HMGET', job, 'hook_attempts', 'webhook', 'state', 'status', 'ctype',
                           'result', 'error')
      return {entry, id, r[1] or '0', r[2], r[3], r[4], r[5], r[6], r[7]}
    end
    drop(KEYS[1], entry)
  end
end
"""
)

# KEYS: hooks, job   ARGV: entry, outcome
_HOOK_DONE = """
redis.call('XACK', KEYS[1], 'meters', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'hook', ARGV[2]) end
return 1
"""


_VIEW_FIELDS = (
    "state",
    "priority",
    "enqueued",
    "deadline",
    "started",
    "finished",
    "attempts",
    "status",
    "ctype",
    "result",
    "error",
    "webhook",
    "hook",
)


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return value or ""


@dataclass(frozen=True)
class NewJob:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    priority: str
    max_queue_seconds: float
    webhook: str


@dataclass(frozen=True)
class Taken:
    """A job this meter now runs."""

    stream: str
    entry: str
    id: str
    fresh: bool  # it was waiting in the queue (not taken again from a meter that stopped)
    attempts: int
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    enqueued: float


@dataclass(frozen=True)
class JobView:
    id: str
    state: str
    priority: str
    enqueued: float
    deadline: float
    started: float | None
    finished: float | None
    attempts: int
    status: int | None
    content_type: str
    result: bytes
    error: str
    webhook: str
    hook: str  # "", "delivered" or "gave_up"

    def document(self) -> dict[str, Any]:
        """The job as JSON for /status (no result body)."""
        doc: dict[str, Any] = {
            "id": self.id,
            "status": self.state,
            "priority": self.priority,
            "enqueuedAt": self.enqueued,
            "attempts": self.attempts,
        }
        for key, value in (
            ("startedAt", self.started),
            ("finishedAt", self.finished),
            ("statusCode", self.status),
            ("error", self.error or None),
            ("webhook", self.hook or ("pending" if self.webhook else None)),
        ):
            if value is not None:
                doc[key] = value
        return doc


@dataclass(frozen=True)
class HookTaken:
    entry: str
    id: str
    attempts: int
    url: str
    state: str
    status: int | None
    content_type: str
    result: bytes
    error: str


class Keys:
    def __init__(self, namespace: str, model: str) -> None:
        self.prefix = f"modelpilot:{{{namespace}/{model}}}"
        self.streams = tuple(f"{self.prefix}:q:{name}" for name in PRIORITIES)
        self.queued = f"{self.prefix}:queued"
        self.hooks = f"{self.prefix}:hooks"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}:idem:{hashlib.sha256(key.encode()).hexdigest()}"


class Broker:
    """One model's async queue as seen by one meter (the consumer)."""

    def __init__(
        self,
        url: str,
        namespace: str,
        model: str,
        consumer: str,
        visibility_seconds: float,
        max_attempts: int,
        retention_seconds: float,
    ) -> None:
        self.keys = Keys(namespace, model)
        self.consumer = consumer
        self.visibility_ms = int(visibility_seconds * 1000)
        self.max_attempts, self.retention = max_attempts, int(retention_seconds)
        self.client = redis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=None, health_check_interval=10
        )
        self._submit = self.client.register_script(_SUBMIT)
        self._take = self.client.register_script(_TAKE)
        self._finish = self.client.register_script(_FINISH)
        self._renew = self.client.register_script(_RENEW)
        self._cancel = self.client.register_script(_CANCEL)
        self._take_hook = self.client.register_script(_TAKE_HOOK)
        self._hook_done = self.client.register_script(_HOOK_DONE)
        self._last_seen = dict.fromkeys((*self.keys.streams, self.keys.hooks), "$")

    @property
    def where(self) -> str:
        """host:port of the broker, for messages (the URL may hold a password)."""
        kwargs = self.client.connection_pool.connection_kwargs
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"

    async def close(self) -> None:
        await self.client.aclose()

    async def ensure_groups(self) -> None:
        """Create the consumer groups (at the start of each stream, so nothing added before
        the first meter came up is skipped). A broker that lost its data gets them again."""
        for stream in (*self.keys.streams, self.keys.hooks):
            try:
                await self.client.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _script(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_groups()
            return await script(keys=keys, args=args)

    # -- the API's side ---------------------------------------------------------------------
    async def submit(self, job: NewJob, idempotency_key: str | None = None) -> str:
        job_id = secrets.token_urlsafe(18)  # 144 random bits: unguessable
        now = time.time()
        fields = {
            "state": "QUEUED",
            "priority": job.priority,
            "method": job.method,
            "path": job.path,
            "headers": json.dumps(job.headers),
            "body": job.body,
            "enqueued": repr(now),
            "deadline": repr(now + job.max_queue_seconds),
            "webhook": job.webhook,
            "attempts": 0,
        }
        ttl = int(job.max_queue_seconds) + self.retention + 86400  # then its result's own
        stream = self.keys.streams[PRIORITIES.index(job.priority)]
        idem = self.keys.idempotency(idempotency_key) if idempotency_key else ""
        args: list[Any] = [job_id, ttl, self.retention]
        for name, value in fields.items():
            args += [name, value]
        keys = [self.keys.job(job_id), stream, self.keys.queued, idem]
        return _text(await self._script(self._submit, keys, args))

    async def view(self, job_id: str) -> JobView | None:
        names = [*_VIEW_FIELDS]
        found = await self.client.hmget(self.keys.job(job_id), names)
        values: dict[str, Any] = dict(zip(names, found, strict=True))
        if values["state"] is None:
            return None

        def number(name: str) -> float | None:
            raw = values[name]
            return float(raw) if raw not in (None, b"") else None

        status = number("status")
        return JobView(
            id=job_id,
            state=_text(values["state"]),
            priority=_text(values["priority"]),
            enqueued=number("enqueued") or 0.0,
            deadline=number("deadline") or 0.0,
            started=number("started"),
            finished=number("finished"),
            attempts=int(number("attempts") or 0),
            status=int(status) if status is not None else None,
            content_type=_text(values["ctype"]),
            result=values["result"] or b"",
            error=_text(values["error"]),
            webhook=_text(values["webhook"]),
            hook=_text(values["hook"]),
        )

    async def cancel(self, job_id: str) -> str | None:
        """The job's state after the attempt: CANCELED, or the state that kept it running."""
        state = await self._cancel(
            keys=[self.keys.job(job_id), self.keys.queued], args=[repr(time.time()), self.retention]
        )
        return _text(state) if state is not None else None

    async def queued(self) -> int:
        return int(await self.client.get(self.keys.queued) or 0)

    # -- the workers' side ------------------------------------------------------------------
    async def take(self) -> Taken | None:
        got = await self._script(
            self._take,
            [*self.keys.streams, self.keys.queued, self.keys.hooks],
            [
                self.keys.prefix,
                self.consumer,
                repr(time.time()),
                self.visibility_ms,
                self.max_attempts,
                self.retention,
            ],
        )
        if got is None:
            return None
        index, entry, job_id, fresh, attempts, method, path, headers, body, enqueued = got
        return Taken(
            stream=self.keys.streams[int(index) - 1],
            entry=_text(entry),
            id=_text(job_id),
            fresh=bool(fresh),
            attempts=int(attempts),
            method=_text(method),
            path=_text(path),
            headers=[(k, v) for k, v in json.loads(headers or b"[]")],
            body=body or b"",
            enqueued=float(enqueued),
        )

    async def renew(self, stream: str, entry: str) -> bool:
        """Keep holding an entry; False when another meter took it over."""
        return bool(await self._renew(keys=[stream], args=[entry, self.consumer]))

    async def finish(
        self,
        taken: Taken,
        state: str,
        status: int | None,
        content_type: str,
        result: bytes,
        error: str = "",
    ) -> bool:
        """Store the outcome; False when another meter finished the job first."""
        done = await self._finish(
            keys=[taken.stream, self.keys.job(taken.id), self.keys.hooks],
            args=[
                taken.entry,
                taken.id,
                state,
                "" if status is None else status,
                content_type,
                result,
                repr(time.time()),
                self.retention,
                error,
            ],
        )
        return bool(done)

    async def note_error(self, job_id: str, error: str) -> None:
        """Why an attempt failed, kept for the final FAILED if no attempt succeeds."""
        await self.client.hset(self.keys.job(job_id), "error", error)

    async def take_hook(self) -> HookTaken | None:
        got = await self._script(
            self._take_hook,
            [self.keys.hooks],
            [self.keys.prefix, self.consumer, self.visibility_ms],
        )
        if got is None:
            return None
        entry, job_id, attempts, url, state, status, ctype, result, error = got
        return HookTaken(
            entry=_text(entry),
            id=_text(job_id),
            attempts=int(attempts or 0),
            url=_text(url),
            state=_text(state),
            status=int(status) if status not in (None, b"") else None,
            content_type=_text(ctype),
            result=result or b"",
            error=_text(error),
        )

    async def count_hook_attempt(self, hook: HookTaken) -> None:
        await self.client.hincrby(self.keys.job(hook.id), "hook_attempts", 1)

    async def renew_hook(self, hook: HookTaken) -> bool:
        return await self.renew(self.keys.hooks, hook.entry)

    async def hook_done(self, hook: HookTaken, outcome: str) -> None:
        await self._hook_done(
            keys=[self.keys.hooks, self.keys.job(hook.id)], args=[hook.entry, outcome]
        )

    async def wait_for_work(self, block_seconds: float) -> tuple[int, int]:
        """Block until entries are added (or `block_seconds` pass): (new jobs, new webhook
        deliveries). A wake-up only; the entries are taken through the consumer group."""
        streams: dict[Any, Any] = dict(self._last_seen)
        answer: Any = await self.client.xread(
            streams, count=100, block=max(int(block_seconds * 1000), 1)
        )
        jobs = hooks = 0
        for stream, entries in answer or ():
            name = _text(stream)
            self._last_seen[name] = _text(entries[-1][0])
            if name == self.keys.hooks:
                hooks += len(entries)
            else:
                jobs += len(entries)
        return jobs, hooks
