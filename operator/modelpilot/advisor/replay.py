"""Replay: a model's traffic under other autoscaling settings, step by step, with the
scaling rule the operator runs (`scaler.policy.advance`, the core of its `decide`).

The model of a replica: a request on it takes base + per_request x (requests in flight on
it - 1), never under base, and it completes in flight / latency requests a second. What
arrives beyond that piles up and is carried from step to step, on the replica it was sent
to (`Replicas`): replicas that come up meanwhile take their share of new arrivals, not the
backlog. New replicas take `startup_seconds` to become active, and meanwhile requests that
find no active replica wait for one.

`fit` learns that model from a History (the arrivals, the service curve by least squares
on Little's-law latency against per-replica concurrency, the cold start from the spans
replicas spent starting); `run` replays arrivals under some settings; `outcome` sums a
History up (what it cost, how fast it was) so the observed and the replayed compare like
with like.
"""

import bisect
import itertools
import math
import random
import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import add

from pydantic import BaseModel

from modelpilot.advisor.model import History
from modelpilot.advisor.rules import came_up, ranked
from modelpilot.api.spec import AutoscalingSpec
from modelpilot.scaler.policy import Plain, ScalerState, advance

Load = Callable[[float], float]  # seconds since start -> requests per second


@dataclass(frozen=True, slots=True)
class ModelBehaviour:
    base_seconds: float = 0.2
    per_request_seconds: float = 0.05
    startup_seconds: float = 60.0
    async_per_replica_rps: float = 0.0  # async requests one replica completes per second


@dataclass(slots=True)
class Step:
    t: float
    rps: float
    concurrency: float
    latency: float
    active: int
    starting: int
    desired: int
    queue: float
    served: float  # requests completed per second (what meters count: a request as it ends)


def carried(inflight: float, rps: float, b: ModelBehaviour, step: float) -> float:
    """The requests in flight on a replica at the end of a step that began with `inflight`
    and saw `rps` arrive: an implicit Euler step of d(in flight)/dt = arrivals -
    completions, with completions = in flight / latency (Little's law) and the latency
    base + per_request x (in flight - 1), never under base. Implicit, so a step far longer
    than a request settles on the equilibrium (it is its fixed point) while arrivals beyond
    what the replica can serve pile up and drain later, as queues do. Under SETTLED, none:
    the drain is geometric, and an idle spell must read as idle."""
    total = inflight + rps * step  # what was in flight and what arrived
    base, k = b.base_seconds, b.per_request_seconds
    light = total / (1 + step / base)  # at most one request in flight: latency is base
    if k <= 0 or light <= 1:
        return light if light >= SETTLED else 0.0
    # c + step x c / (base - k + k c) = total, a quadratic in c with one positive root
    shift = base - k
    half = (shift + step - k * total) / 2
    return (math.sqrt(half * half + k * total * shift) - half) / k


def latency_at(per_replica: float, b: ModelBehaviour) -> float:
    """The latency of a request on a replica with `per_replica` requests in flight."""
    if per_replica <= 1:
        return b.base_seconds
    return b.base_seconds + b.per_request_seconds * (per_replica - 1)


SLOW_SHARE = 0.05  # the latency series is a high percentile: the slowest 5% of requests


class Replicas:
    """The active replicas' requests in flight, in groups of replicas that carry alike
    (oldest first). A request stays on the replica it was sent to: replicas that come up
    during a backlog take their share of new arrivals, not the backlog, which drains where
    it queued (as behind a Service, where each request picks a pod once). Groups that
    reach the same load merge, so a steady replay keeps one."""

    __slots__ = ("groups", "held", "waiting")

    def __init__(self) -> None:
        self.groups: list[list[float]] = []  # [replicas, requests in flight on each]
        self.held = 0
        self.waiting = 0.0  # arrived while no replica was active

    def step(
        self, rps: float, active: int, b: ModelBehaviour, step: float, wait_seconds: float
    ) -> tuple[float, float]:
        """One step of `rps` arrivals spread evenly over `active` replicas: the requests in
        flight at its end, and the latency the slowest SLOW_SHARE of them see (`wait_seconds`:
        how long requests wait for the first replica when none is active). Called at every
        step of every replay, so the common case (all replicas alike) is kept cheap."""
        if active != self.held:
            self._resize(active)
        if not active:
            self.waiting += rps * step
            return self.waiting, b.base_seconds + wait_seconds
        groups = self.groups
        if self.waiting:  # the first replicas up take what waited for them
            for group in groups:
                group[1] += self.waiting / active
            self.waiting = 0.0
        share = rps / active
        if len(groups) == 1:
            group = groups[0]
            after = group[1] = carried(group[1], share, b, step)
            return active * after, latency_at(after, b)
        total = 0.0
        merged: list[list[float]] = []
        for count, inflight in groups:
            after = carried(inflight, share, b, step)
            last = merged[-1] if merged else None
            if last is not None and abs(last[1] - after) <= SAME_LOAD * max(1.0, after):
                last[1] = (last[0] * last[1] + count * after) / (last[0] + count)
                last[0] += count
            else:
                merged.append([count, after])
            total += count * after
        self.groups = merged
        return total, self._slowest(b)

    def _resize(self, active: int) -> None:
        """New replicas join as a group of their own, carrying nothing yet; on the way down
        the latest started go first (what they carried completes as they drain)."""
        groups = self.groups
        if active > self.held:
            groups.append([active - self.held, 0.0])
        while active < self.held:
            drop = min(self.held - active, int(groups[-1][0]))
            groups[-1][0] -= drop
            self.held -= drop
            if not groups[-1][0]:
                groups.pop()
        self.held = active

    def _slowest(self, b: ModelBehaviour) -> float:
        """The latency the slowest SLOW_SHARE of new requests see, over the groups."""
        seen = 0.0
        for count, inflight in sorted(self.groups, key=lambda g: -g[1]):
            seen += count / self.held
            if seen >= SLOW_SHARE:
                return latency_at(inflight, b)
        return latency_at(self.groups[-1][1], b)


SAME_LOAD = 0.01  # groups whose loads differ by under 1% carry alike


def run(
    settings: AutoscalingSpec,
    load: Load,
    behaviour: ModelBehaviour,
    seconds: float,
    step: float = 15.0,
    seed: int = 1,
    async_load: Load | None = None,
    noise: float = 0.03,
    changed: Sequence[tuple[int, AutoscalingSpec]] = (),
    initial: int | None = None,
) -> list[Step]:
    """`seconds` of `load` under `settings` (from each step in `changed` on, its settings),
    one Step per `step`, from `initial` replicas (None: minReplicas)."""
    times = [n * step for n in range(int(seconds // step))]
    rps = [max(load(t), 0.0) for t in times]
    queued = [async_load(t) for t in times] if async_load is not None else None
    rng = random.Random(seed)
    path = trajectory(settings, rps, behaviour, step, rng, noise, queued, changed, initial)
    columns = zip(
        times,
        rps,
        path.concurrency,
        path.latency,
        path.active,
        path.starting,
        path.desired,
        path.queue,
        path.served,
        strict=True,
    )
    return [Step(*point) for point in columns]


# Requests (in flight, or completed in a step) below which none are: a fluid queue drains
# geometrically, and an idle spell must read as idle, not as a trickle of 1e-30 requests.
SETTLED = 0.01


@dataclass(slots=True)
class Trajectory:
    """A run's signals, a list each with one value per step."""

    concurrency: list[float]
    latency: list[float]
    active: list[int]
    starting: list[int]
    desired: list[int]
    queue: list[float]
    served: list[float]


def trajectory(
    settings: AutoscalingSpec,
    rps: Sequence[float],
    b: ModelBehaviour,
    step: float,
    rng: random.Random | None = None,
    noise: float = 0.0,
    async_rps: Sequence[float] | None = None,
    changed: Sequence[tuple[int, AutoscalingSpec]] = (),
    initial: int | None = None,
) -> Trajectory:
    """Arrivals (`rps` per step, >= 0) under `settings`: the scaler's rule decides at every
    step on the window's average concurrency. The inner loop of every replay (thousands of
    steps per candidate setting, candidates per troubled model, models per fleet), so it
    keeps plain lists and calls the rule's message-free core. `changed`: (step, settings)
    in step order, the settings in force from that step on (as Auto mode changed them).
    `initial`: the replicas up (and ready) at the start, within the settings' bounds; None:
    minReplicas. A replay of a lookback begins mid-stream, with the replicas up then."""
    up = settings.min_replicas if initial is None else initial
    first = min(max(up, settings.min_replicas), settings.max_replicas)
    state = ScalerState(replicas=first)
    knobs = Plain.of(settings)
    # When each replica is active, kept sorted: replicas start in time order and the
    # latest started go first on the way down.
    ready_at: list[float] = [-1.0] * first
    width = max(1, int(settings.autoscaling_window_seconds // step))
    window: deque[float] = deque(maxlen=width)
    switches = list(changed)
    switch_at = switches[0][0] if switches else -1
    queue = inflight = 0.0
    replicas_now = Replicas()
    size = len(rps)
    # Filled in place (a store costs half an append): this loop runs some half a million
    # times per fleet evaluation.
    concurrencies, latencies, queues = [0.0] * size, [0.0] * size, [0.0] * size
    served = [0.0] * size
    actives, startings, desireds = [0] * size, [0] * size, [0] * size
    jitter = rng.uniform if rng is not None and noise else None
    ready = bisect.bisect_right
    for n, r in enumerate(rps):
        t = n * step
        if n == switch_at:
            _, later = switches.pop(0)
            knobs = Plain.of(later)
            width = max(1, int(later.autoscaling_window_seconds // step))
            window = deque(window, maxlen=width)
            switch_at = switches[0][0] if switches else -1
        count = len(ready_at)
        active = ready(ready_at, t)
        starting = count - active
        soonest = ready_at[active] - t if starting else 0.0
        before = inflight
        inflight, latency = replicas_now.step(r, active, b, step, soonest / 2)
        done = r - (inflight - before) / step
        served[n] = done if done * step > SETTLED else 0.0
        concurrency = inflight
        if jitter is not None:
            latency *= 1 + jitter(-noise, noise)
        if async_rps is not None:
            queue = max(queue + (async_rps[n] - active * b.async_per_replica_rps) * step, 0)
        if width == 1:  # a window of one step (the default 60 s at 60 s points)
            average = concurrency
        else:
            window.append(concurrency)
            average = sum(window) / len(window)
        replicas, want, _, state = advance(knobs, average, state, t)
        if replicas > count:
            ready_at += [t + b.startup_seconds] * (replicas - count)
        elif replicas < count:
            del ready_at[replicas:]
        concurrencies[n] = concurrency
        latencies[n] = latency
        actives[n] = active
        startings[n] = starting
        desireds[n] = want or replicas
        queues[n] = queue
    return Trajectory(concurrencies, latencies, actives, startings, desireds, queues, served)


def history(steps: list[Step], start: float, step: float = 15.0) -> History:
    """What the advisor would read from Prometheus for these steps."""
    return History(
        times=[start + s.t for s in steps],
        step=step,
        concurrency=[s.concurrency for s in steps],
        latency=[s.latency if s.rps > 0 or s.served > 0 else None for s in steps],
        rps=[s.served for s in steps],
        errors=[0.0 for _ in steps],
        active=[float(s.active) for s in steps],
        starting=[float(s.starting) for s in steps],
        desired=[float(s.desired) for s in steps],
        queue=[s.queue for s in steps],
    )


# -- fitting --------------------------------------------------------------------------------


class Fitted(BaseModel):
    """A model learned from its own history."""

    arrivals: list[float]  # requests per second at each point (unknown: none arrived)
    step: float
    base_seconds: float  # mean latency at one request per replica
    per_request_seconds: float  # more mean latency per extra request on a replica
    tail_ratio: float  # the latency series (a percentile) over the mean, typically
    # How the latency series reads a mean latency: (a band's median mean, its median
    # series value), the means ascending. A percentile from histogram buckets is not one
    # ratio to the mean at every latency (it sticks at a bucket's bound, then jumps), and
    # the objective is judged on it.
    reads: list[tuple[float, float]] = []
    cold_start_seconds: float | None  # None: no replica was seen starting
    points: int  # how many points fed the service curve
    initial: int | None = None  # replicas up at the first point (None: not seen)

    def percentile(self, latencies: Sequence[float]) -> list[float]:
        """Mean latencies as the latency series would read them: between the bands seen,
        by linear interpolation; below them, at the lowest band's ratio; above them, at the
        series' typical ratio to the mean."""
        reads = self.reads
        if not reads:
            return [v * self.tail_ratio for v in latencies]
        means = [mean for mean, _ in reads]
        last = len(reads) - 1
        done: dict[float, float] = {}  # a steady replay repeats its latencies
        out = []
        for v in latencies:
            read = done.get(v)
            if read is None:
                i = bisect.bisect_left(means, v)
                if i == 0:
                    read = v * reads[0][1] / reads[0][0]
                elif i > last:
                    read = v * self.tail_ratio
                else:
                    (m0, r0), (m1, r1) = reads[i - 1], reads[i]
                    read = r0 + (r1 - r0) * (v - m0) / (m1 - m0)
                done[v] = read
            out.append(read)
        return out

    @property
    def behaviour(self) -> ModelBehaviour:
        return ModelBehaviour(
            self.base_seconds, self.per_request_seconds, self.cold_start_seconds or 0.0
        )


MIN_FIT_POINTS = 10
MIN_SPREAD = 0.05  # requests per replica: the load's spread below which a slope is noise


def _runs(flags: Sequence[bool]) -> list[int]:
    """Lengths of the runs of True."""
    out, length = [], 0
    for flag in [*flags, False]:
        if flag:
            length += 1
        elif length:
            out.append(length)
            length = 0
    return out


def _line(pairs: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least squares on relative errors (weights 1/y^2): (slope, intercept). Latency's noise
    grows with it, so a backlog's minute-long points would otherwise outweigh the
    sub-second ones that say what the base is."""
    weights = [1 / (y * y) if y > 0 else 0.0 for _, y in pairs]
    total = sum(weights)
    if not total:
        return 0.0, 0.0
    mean_x = sum(w * x for w, (x, _) in zip(weights, pairs, strict=True)) / total
    mean_y = sum(w * y for w, (_, y) in zip(weights, pairs, strict=True)) / total
    var = sum(w * (x - mean_x) ** 2 for w, (x, _) in zip(weights, pairs, strict=True))
    # Points at (nearly) one load have no slope to learn: noise would make one up.
    if var < MIN_SPREAD**2 * total:
        return 0.0, mean_y
    covar = sum(w * (x - mean_x) * (y - mean_y) for w, (x, y) in zip(weights, pairs, strict=True))
    return covar / var, mean_y - covar / var * mean_x


def measured(h: History) -> History:
    """`h` from its first to its last point with traffic measured (concurrency or request
    rate known). Before a model's first metrics and after its last lies the unknown, not an
    idle spell: replayed as one, it would add replicas at minReplicas to every replay (a
    model younger than the lookback predicted fewer replicas than it runs), and a verdict
    would move with the minute it is made in."""
    known = [
        i
        for i, (c, r) in enumerate(zip(h.concurrency, h.rps, strict=True))
        if c is not None or r is not None
    ]
    return h.points(known[0], known[-1] + 1) if known else h.points(0, 0)


def fit(h: History) -> Fitted | None:
    """The service curve, arrivals and cold start of `h`; None with too few points.

    The curve is fitted on the mean latency by Little's law (concurrency / completions,
    both from the meters' own counters over the same windows), against requests in flight
    per replica: the latency series is a percentile from histogram buckets, coarse in the
    seconds a backlog takes, and lags concurrency while one drains. A replay reads its mean
    latency back as that series read the history's means (`Fitted.percentile`)."""
    joined = came_up(h.active)
    points = [
        (c / a, c / r, lat)
        for c, r, lat, a, new in zip(h.concurrency, h.rps, h.latency, h.active, joined, strict=True)
        if c is not None and r and a and c > 0 and lat is not None and not (new and c > a)
    ]
    if len(points) < MIN_FIT_POINTS or not h.times:
        return None
    spans = _runs([(s or 0) > 0 for s in h.starting])
    # A span of D seconds covers D / step grid points on average, wherever it starts; a
    # replay counts replicas starting from the point after the one that asked for them,
    # D / step - 1/2 on average, so half a step more reproduces the spans seen.
    cold = h.cold_start_seconds or ((statistics.fmean(spans) + 0.5) * h.step if spans else None)
    base, slope = curve([(x, mean) for x, mean, _ in points])
    return Fitted(
        arrivals=arrivals(h),
        step=h.step,
        base_seconds=base,
        per_request_seconds=slope,
        tail_ratio=statistics.median(lat / mean for _, mean, lat in points),
        reads=_bands([(mean, lat) for _, mean, lat in points]),
        cold_start_seconds=cold,
        points=len(points),
        initial=next((round(a) for a in h.active if a is not None), None),
    )


BANDS = 8  # of the latency series by mean latency, at most


def _bands(pairs: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """(median mean, median series value) over bands of the points by mean latency, each of
    at least MIN_FIT_POINTS // 2 points, the means strictly ascending."""
    ordered = sorted(pairs)
    size = max(MIN_FIT_POINTS // 2, -(-len(ordered) // BANDS))
    out: list[tuple[float, float]] = []
    for i in range(0, len(ordered), size):
        band = ordered[i : i + size]
        mean = statistics.median(m for m, _ in band)
        if out and mean <= out[-1][0]:
            continue  # a band at the same mean as the last says nothing more
        out.append((mean, statistics.median(v for _, v in band)))
    return out


def arrivals(h: History) -> list[float]:
    """Requests per second arriving at each point. Meters count a request as it ends, so
    while a backlog builds they count what the replicas complete, not what arrives; the
    difference is what piled up: arrivals = completions + the change in flight per second."""
    out, before = [], None
    for r, c in zip(h.rps, h.concurrency, strict=True):
        piled = (c - before) / h.step if c is not None and before is not None else 0.0
        out.append(max((r or 0.0) + piled, 0.0))
        before = c if c is not None else before
    return out


def curve(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(base, slope) of mean latency = base + slope x max(in flight per replica - 1, 0),
    by least squares on relative errors, from (in flight per replica, mean latency)."""
    pairs = [(max(x - 1, 0.0), mean) for x, mean in points]  # linear in (base, slope)
    slope, base = _line(pairs)
    # Points far off the line (a replica overwhelmed for a step, then relieved) would drag
    # it: drop those beyond 3 median relative deviations (and a quarter, so a history
    # mostly at one load does not discard every other) once and fit again.
    misses = [abs(y - base - slope * z) / y for z, y in pairs]
    cut = 3 * statistics.median(misses) + 0.25
    kept = [p for p, miss in zip(pairs, misses, strict=True) if miss <= cut]
    if len(kept) >= MIN_FIT_POINTS:
        slope, base = _line(kept)
    slope = max(slope, 0.0)  # more load is never faster
    if sum(1 for z, _ in pairs if z <= 1) < MIN_FIT_POINTS // 2 and slope:
        # Never seen near one request per replica (only ever overloaded), the base is out of
        # sight: a lone request is taken to take one request's share of the throughput, the
        # least it can, so the replay errs toward more replicas helping. The next history,
        # with them, shows the base.
        base = min(base, slope)
    return max(base, 1e-3), slope


def replay(
    fitted: Fitted,
    settings: AutoscalingSpec,
    start: float = 0.0,
    changed: Sequence[tuple[int, AutoscalingSpec]] = (),
) -> History:
    """The fitted arrivals under `settings` (and from each step in `changed` on, its
    settings), as a History on the same grid (its latency at the objective's percentile, as
    the history it was fitted from)."""
    rps, step = fitted.arrivals, fitted.step
    path = trajectory(
        settings, rps, fitted.behaviour, step, changed=changed, initial=fitted.initial
    )
    read = fitted.percentile(path.latency)
    return History(
        times=[start + n * step for n in range(len(rps))],
        step=step,
        concurrency=path.concurrency,
        latency=[
            v if r > 0 or d > 0 else None for v, r, d in zip(read, rps, path.served, strict=True)
        ],
        rps=path.served,
        errors=[0.0] * len(rps),
        active=[float(a) for a in path.active],
        starting=[float(s) for s in path.starting],
        desired=[float(d) for d in path.desired],
        queue=path.queue,
    )


# -- outcomes -------------------------------------------------------------------------------


class Outcome(BaseModel):
    """What a history cost and how it served. Latency figures are over the points with
    traffic, of the latency series (the objective's percentile at each point)."""

    replica_hours: float
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    attainment: float | None  # share of points with traffic within the objective
    cold_starts: int  # scale-ups: each starts replicas that are not serving yet
    scale_events_per_hour: float


def outcome(h: History, objective_seconds: float | None) -> Outcome:
    replicas = [a + (s or 0) for a, s in zip(h.active, h.starting, strict=True) if a is not None]
    busy = [lat for lat in h.latency if lat is not None]  # where requests were measured
    return _summary(replicas, busy, len(h.times), h.step, objective_seconds)


def replay_outcome(
    fitted: Fitted,
    settings: AutoscalingSpec,
    objective_seconds: float | None,
    changed: Sequence[tuple[int, AutoscalingSpec]] = (),
) -> Outcome:
    """outcome(replay(fitted, settings, changed=changed), objective_seconds), straight from
    the trajectory: choosing values replays several candidates per troubled model, and
    building each one's History only to sum it up took a third of the time."""
    rps = fitted.arrivals
    path = trajectory(
        settings, rps, fitted.behaviour, fitted.step, changed=changed, initial=fitted.initial
    )
    read = fitted.percentile(path.latency)
    busy = [v for v, r, d in zip(read, rps, path.served, strict=True) if r > 0 or d > 0]
    replicas = list(map(add, path.active, path.starting))
    return _summary(replicas, busy, len(rps), fitted.step, objective_seconds)


def _summary(
    replicas: Sequence[float],
    busy: list[float],
    points: int,
    step: float,
    objective_seconds: float | None,
) -> Outcome:
    """An Outcome from the replicas at each point, the latency at each point with traffic,
    and the grid."""
    changes = [b - a for a, b in itertools.pairwise(replicas) if b != a]
    ordered = sorted(busy)
    hours = points * step / 3600
    within = (
        bisect.bisect_right(ordered, objective_seconds) / len(ordered)
        if ordered and objective_seconds is not None
        else None
    )
    return Outcome(
        replica_hours=sum(replicas) * step / 3600,
        latency_p50=ranked(ordered, 50) if ordered else None,
        latency_p95=ranked(ordered, 95) if ordered else None,
        latency_p99=ranked(ordered, 99) if ordered else None,
        attainment=within,
        cold_starts=sum(1 for c in changes if c > 0),
        scale_events_per_hour=len(changes) / hours if hours else 0.0,
    )


def trace_arrivals(timestamps: Sequence[float], step: float) -> list[float]:
    """Requests per second in each `step` of an arrival trace (unix seconds, any order)."""
    if not timestamps:
        return []
    first = min(timestamps)
    counts = [0] * (int((max(timestamps) - first) // step) + 1)
    for ts in timestamps:
        counts[int((ts - first) // step)] += 1
    return [c / step for c in counts]
