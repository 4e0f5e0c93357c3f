from modelpilot.controller.leader import (
    LEASE_SECONDS,
    Holding,
    lease_name,
    lease_spec,
    may_hold,
)

NOW = 1_800_000_000.0


def test_who_may_hold_the_lease() -> None:
    assert may_hold(None, "a", NOW)  # no lease yet
    assert may_hold(Holding(None, NOW, 15), "a", NOW)  # released
    assert may_hold(Holding("a", NOW - 14, 15), "a", NOW)  # mine: renew
    assert not may_hold(Holding("b", NOW - 14, 15), "a", NOW)  # b's, still valid
    assert may_hold(Holding("b", NOW - 16, 15), "a", NOW)  # b's, expired
    assert may_hold(Holding("b", None, 15), "a", NOW)  # never renewed


def test_lease_spec_counts_transitions_and_keeps_the_acquire_time() -> None:
    first = lease_spec(None, "a", NOW)
    assert first["holderIdentity"] == "a" and first["leaseTransitions"] == 0
    assert first["leaseDurationSeconds"] == LEASE_SECONDS
    assert first["renewTime"] == first["acquireTime"] == "2027-01-15T08:00:00.000000Z"
    renewed = lease_spec({"spec": first}, "a", NOW + 2)
    assert renewed["acquireTime"] == first["acquireTime"]
    assert renewed["renewTime"] == "2027-01-15T08:00:02.000000Z"
    taken = lease_spec({"spec": renewed}, "b", NOW + 30)
    assert (taken["holderIdentity"], taken["leaseTransitions"]) == ("b", 1)
    assert Holding.of({"spec": taken}) == Holding("b", NOW + 30, LEASE_SECONDS)


def test_each_shard_has_its_own_lease() -> None:
    assert lease_name(None, []) == "modelpilot-operator"
    a, b = lease_name("shard=a", []), lease_name("shard=b", [])
    assert a != b and a.startswith("modelpilot-operator-")
    assert lease_name(None, ["x", "y"]) == lease_name(None, ["y", "x"])


def test_failures_to_reach_a_server_are_one_line() -> None:
    import logging

    from kubernetes.client import ApiException

    from modelpilot.controller.kube import report_failure, unreachable

    assert unreachable(ConnectionRefusedError()) and unreachable(TimeoutError())
    assert unreachable(ApiException(status=503)) and unreachable(ApiException(status=0))
    assert not unreachable(ApiException(status=422)) and not unreachable(KeyError("x"))
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("test-report-failure")
    logger.addHandler(type("H", (logging.Handler,), {"emit": lambda _, r: records.append(r)})())
    report_failure(logger, "tick failed", ConnectionRefusedError("refused"))
    report_failure(logger, "tick failed", KeyError("bug"))
    assert records[0].exc_info is None and "ConnectionRefusedError" in records[0].getMessage()
    assert records[1].exc_info is not None  # a bug keeps its traceback
