"""Which pod and container a process belongs to, from its /proc/<pid>/cgroup.

The kubelet puts each container in a cgroup named after the pod UID; the spelling varies:

  cgroupfs driver  .../kubepods/burstable/pod<uid>/<container-id>
  systemd driver   .../kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
                   (also crio-<id>.scope, docker-<id>.scope), cgroup v1 and v2 alike
"""

import re
from dataclasses import dataclass

_POD = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_CONTAINER = re.compile(r"(?:^|/|-)([0-9a-f]{64})(?:\.scope)?$")


@dataclass(frozen=True)
class CgroupOwner:
    pod_uid: str
    container_id: str | None


def owner(cgroup_file: str) -> CgroupOwner | None:
    """The pod (and container) owning a process, or None for processes outside pods."""
    for line in cgroup_file.splitlines():
        path = line.split(":", 2)[-1]
        pod = _POD.search(path)
        if pod is None:
            continue
        container = _CONTAINER.search(path)
        return CgroupOwner(
            pod.group(1).replace("_", "-"), container.group(1) if container else None
        )
    return None
