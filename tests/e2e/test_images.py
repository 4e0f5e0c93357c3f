"""The images `make images` built for the node hold what the Dockerfiles install."""

import tarfile
from pathlib import Path

from packaging.utils import canonicalize_name

from modelpilot.devcluster import images
from tests.e2e.conftest import Node

REPO = Path(__file__).resolve().parents[2]


def _lock_names() -> set[str]:
    lock = (REPO / "requirements.lock").read_text().splitlines()
    return {canonicalize_name(line.split("==")[0]) for line in lock if "==" in line}


def test_the_image_holds_the_lock_files_packages_on_the_dockerfiles_python(
    cluster_node: Node,
) -> None:
    image = images.modelpilot_image()
    assert image.ref == cluster_node.images[image.name]
    base, deps, _app = (images.layer_tar(layer) for layer in image.layers)
    assert images.python_version(base).startswith(images.PYTHON_MINOR + ".")
    with tarfile.open(deps) as tar:
        installed = {
            canonicalize_name(Path(name).parent.name.split("-")[0])
            for name in tar.getnames()
            if name.endswith(".dist-info/METADATA")
        }
    locked = _lock_names()
    assert locked <= installed, f"missing from the image: {sorted(locked - installed)}"
    # Only what bookworm's Python 3.11.2 needs beyond a newer one (redis: before 3.11.3).
    assert installed - locked == {"async-timeout"}
