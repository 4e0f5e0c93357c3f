"""Model pods by model, kept from a pod list and its watch events (pure: no I/O).

The operator's only copy of the pods: one small `PodInfo` per pod, nothing of the API body.
"""

from collections.abc import Collection, Iterator, Mapping
from typing import Any

from modelpilot.api import MODEL_LABEL, Key
from modelpilot.observer.pods import PodInfo


def model_of(body: Mapping[str, Any]) -> Key | None:
    """The (namespace, model) a pod body belongs to; None for a pod of no model."""
    meta = body.get("metadata") or {}
    model = (meta.get("labels") or {}).get(MODEL_LABEL)
    namespace = meta.get("namespace")
    return (namespace, model) if model and namespace else None


class PodIndex(Mapping[Key, Collection[PodInfo]]):
    """(namespace, model) -> that model's pods; what the status worker and loops read."""

    def __init__(self) -> None:
        self._pods: dict[Key, dict[str, PodInfo]] = {}  # by model, then by pod UID
        self._model: dict[str, Key] = {}  # pod UID -> its model (a pod may be relabelled)

    def __getitem__(self, key: Key) -> Collection[PodInfo]:
        return tuple(self._pods[key].values())

    def __iter__(self) -> Iterator[Key]:
        return iter(self._pods)

    def __len__(self) -> int:
        return len(self._pods)

    def apply(self, event: str, body: Mapping[str, Any]) -> set[Key]:
        """One watch event (ADDED, MODIFIED, DELETED): the models whose pods changed."""
        uid = (body.get("metadata") or {}).get("uid")
        if not uid:
            return set()
        changed = set()
        before = self._model.get(uid)
        after = model_of(body) if event != "DELETED" else None
        if before is not None and before != after:
            self._drop(uid, before)
            changed.add(before)
        if after is not None:
            info = PodInfo.from_body(body)
            pods = self._pods.setdefault(after, {})
            if pods.get(uid) != info:
                pods[uid] = info
                self._model[uid] = after
                changed.add(after)
        return changed

    def replace(self, namespace: str | None, fresh: "PodIndex") -> set[Key]:
        """`fresh`, built from a new list of every pod in `namespace` (None: all
        namespaces), replaces what was known there: the models whose pods changed."""
        stale = {k for k in self._pods if namespace is None or k[0] == namespace}
        changed = {k for k in stale | set(fresh._pods) if self._pods.get(k) != fresh._pods.get(k)}
        for key in stale:
            for uid in self._pods.pop(key):
                self._model.pop(uid, None)
        self._pods.update(fresh._pods)
        self._model.update(fresh._model)
        return changed

    def _drop(self, uid: str, key: Key) -> None:
        pods = self._pods.get(key, {})
        pods.pop(uid, None)
        if not pods:
            self._pods.pop(key, None)
        self._model.pop(uid, None)
