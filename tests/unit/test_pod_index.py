import asyncio
from typing import Any

from modelpilot.api import MODEL_LABEL
from modelpilot.controller.pod_watch import _lines
from modelpilot.observer.pod_index import PodIndex


def pod(name: str, model: str | None, ready: str = "False", ns: str = "a") -> dict[str, Any]:
    labels = {MODEL_LABEL: model} if model else {}
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "namespace": ns, "labels": labels},
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }


def names(index: PodIndex, key: tuple[str, str]) -> set[str]:
    return {p.name for p in index.get(key) or ()}


def test_events_change_a_models_pods_and_say_which_model_changed() -> None:
    index = PodIndex()
    assert index.apply("ADDED", pod("p1", "chat")) == {("a", "chat")}
    assert index.apply("ADDED", pod("p2", "chat")) == {("a", "chat")}
    assert names(index, ("a", "chat")) == {"p1", "p2"}
    # The same facts again (a status write that changed nothing we keep): no wake-up.
    assert index.apply("MODIFIED", pod("p1", "chat")) == set()
    assert index.apply("MODIFIED", pod("p1", "chat", ready="True")) == {("a", "chat")}
    assert [p.ready for p in index[("a", "chat")] if p.name == "p1"] == ["True"]
    assert index.apply("DELETED", pod("p2", "chat")) == {("a", "chat")}
    assert index.apply("DELETED", pod("p1", "chat")) == {("a", "chat")}
    assert ("a", "chat") not in index and len(index) == 0


def test_a_relabelled_pod_moves_and_an_unlabelled_one_leaves() -> None:
    index = PodIndex()
    index.apply("ADDED", pod("p1", "chat"))
    assert index.apply("MODIFIED", pod("p1", "embed")) == {("a", "chat"), ("a", "embed")}
    assert names(index, ("a", "embed")) == {"p1"} and ("a", "chat") not in index
    assert index.apply("MODIFIED", pod("p1", None)) == {("a", "embed")}
    assert len(index) == 0
    assert index.apply("ADDED", {"metadata": {"name": "no-uid"}}) == set()


def test_a_fresh_list_replaces_its_namespace_only() -> None:
    index = PodIndex()
    for body in (pod("p1", "chat"), pod("p2", "chat"), pod("q1", "chat", ns="b")):
        index.apply("ADDED", body)
    fresh = PodIndex()
    fresh.apply("ADDED", pod("p1", "chat"))  # p2 went while the watch was down
    fresh.apply("ADDED", pod("r1", "embed"))
    assert index.replace("a", fresh) == {("a", "chat"), ("a", "embed")}
    assert names(index, ("a", "chat")) == {"p1"}
    assert names(index, ("a", "embed")) == {"r1"}
    assert names(index, ("b", "chat")) == {"q1"}  # another namespace's watch: untouched
    # A pod deleted after the relist is found through its UID as before.
    assert index.apply("DELETED", pod("r1", "embed")) == {("a", "embed")}
    # Every namespace (a cluster-wide watch): what is not listed is gone.
    assert index.replace(None, PodIndex()) == {("a", "chat"), ("b", "chat")}
    assert len(index) == 0


def test_watch_lines_are_read_whatever_the_chunking() -> None:
    class Stream:
        def __init__(self, chunks: list[bytes]) -> None:
            self.chunks = chunks

        async def iter_any(self) -> Any:
            for chunk in self.chunks:
                yield chunk

    async def read(chunks: list[bytes]) -> list[dict[str, Any]]:
        return [event async for event in _lines(Stream(chunks))]  # type: ignore[arg-type]

    whole = b'{"type": "ADDED", "n": 1}\n{"type": "BOOKMARK", "n": 2}\n'
    assert asyncio.run(read([whole])) == [{"type": "ADDED", "n": 1}, {"type": "BOOKMARK", "n": 2}]
    split = [whole[i : i + 3] for i in range(0, len(whole), 3)]
    assert asyncio.run(read(split)) == asyncio.run(read([whole]))
    assert asyncio.run(read([b'{"n": 1}\n\n', b'{"n": 2}'])) == [{"n": 1}, {"n": 2}]
