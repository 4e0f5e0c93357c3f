import socket

from modelpilot.devcluster.ports import is_free, pick_port


def test_preferred_port_is_used_when_free() -> None:
    free = pick_port()
    assert pick_port(free) == free


def test_taken_preferred_port_gives_another() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        assert not is_free(taken)
        chosen = pick_port(taken)
        assert chosen != taken
        assert is_free(chosen)


def test_avoid_skips_ports_already_handed_to_siblings() -> None:
    first = pick_port()
    assert pick_port(first, avoid=frozenset({first})) != first
