"""Container images without Docker or a registry: ModelPilot's and the sample model's, built
from Debian packages and the project's lock file, cached by content.

Each image is a stack of plain tar layers written into an OCI image layout by `umoci`:

- base: a Debian root filesystem with Python (`mmdebstrap`, from the machine's own apt
  sources, so the same mirror as every other package here);
- deps: the wheels pinned in requirements.lock (`pip install --target`), which needs no
  compiler inside the image and matches the Dockerfile's `pip install -r requirements.lock`;
- app: the `modelpilot` package (or the sample model's server.py).

mmdebstrap (not debootstrap) because it writes the root filesystem as a tarball directly and
resolves packages with apt; umoci (not buildah) because it writes OCI layouts without a
container engine, and `raw add-layer` takes those tarballs as they are.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from modelpilot.devcluster.binaries import CACHE_DIR, find_binary

REPO_ROOT = Path(__file__).resolve().parents[3]
SUITE = "bookworm"  # the Dockerfiles' python:3.11-slim-bookworm is the same distribution
BASE_PACKAGES = ("python3",)
PYTHON_MINOR = "3.11"  # SUITE's python3, as the Dockerfiles' base has; checked on each build
# Where the wheels and the app live inside the images.
LIB_DIR = "opt/modelpilot/lib"
BUILD_VERSION = "3"  # bump when the way layers are made changes
USER = "65532:65532"
USER_NAME = "modelpilot"
# Both Python images: modules from LIB_DIR, no byte-code written, output unbuffered.
PYTHON_ENV = (f"PYTHONPATH=/{LIB_DIR}", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
CACHE = CACHE_DIR / "images"
# Everyone's layers carry fixed times and owners, so equal inputs give equal digests.
EPOCH = 1_700_000_000


@dataclass(frozen=True)
class Layer:
    """One tar layer: `key` names its content (the cache key), `build` writes it."""

    name: str
    key: str
    build: Callable[[Path], None]


@dataclass(frozen=True)
class Image:
    name: str  # repository, e.g. modelpilot.local/modelpilot
    layers: tuple[Layer, ...]
    entrypoint: tuple[str, ...]
    env: tuple[str, ...] = ()
    workdir: str = "/"
    ports: tuple[int, ...] = field(default=())
    user: str = USER

    @property
    def tag(self) -> str:
        """A content tag: the layers' keys and the config."""
        parts = [layer.key for layer in self.layers]
        parts += [json.dumps([self.entrypoint, self.env, self.workdir, self.ports, self.user])]
        return _digest("\n".join(parts))[:12]

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def tree_digest(root: Path, suffixes: Sequence[str] = (".py",)) -> str:
    """sha256 over the relative paths and bytes of the files under `root` with `suffixes`."""
    sha = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in suffixes):
        sha.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


def _apt_sources() -> Path:
    for candidate in (
        Path("/etc/apt/sources.list.d/debian.sources"),
        Path("/etc/apt/sources.list"),
    ):
        if candidate.is_file():
            return candidate
    raise RuntimeError("no apt sources found (/etc/apt/sources.list.d/debian.sources)")


def _run(cmd: Sequence[str], what: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(list(cmd), capture_output=True, text=True, env=env)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-3000:]
        raise RuntimeError(f"{what} failed ({cmd[0]} exited {result.returncode}):\n{output}")


def build_base(dest: Path) -> None:
    """Debian `SUITE` with Python and nothing to install packages with (variant essential)."""
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH))
    _run(
        [
            find_binary("mmdebstrap"),
            "--variant=essential",
            f"--include={','.join(BASE_PACKAGES)}",
            "--quiet",
            # The user the containers run as, named (kopf asks getpass.getuser() who it is),
            # as the Dockerfiles' `useradd --uid 65532` does.
            "--customize-hook="
            f'echo "{USER_NAME}:x:65532:65532::/nonexistent:/usr/sbin/nologin" >> "$1/etc/passwd"'
            f' && echo "{USER_NAME}:x:65532:" >> "$1/etc/group"',
            *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "info", "locale")),
            SUITE,
            str(dest),
            str(_apt_sources()),
        ],
        "mmdebstrap",
        env,
    )


def _tar_tree(root: Path, dest: Path) -> None:
    """`root`'s contents as a layer: owned by root, fixed times, no byte-code caches."""

    def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if "__pycache__" in info.name.split("/"):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = EPOCH
        return info

    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for child in sorted(root.iterdir()):
            tar.add(child, arcname=child.name, filter=normalize)


def pip_layer(requirements: Sequence[str], python: str, dest: Path) -> None:
    """Wheels only (no compiler in the image) for the image's Python `python` (x.y.z), into
    LIB_DIR; dependencies the lock file leaves out because the machine that wrote it runs a
    newer Python (redis needs async-timeout before 3.11.3) are added."""
    with tempfile.TemporaryDirectory() as staging:
        target = Path(staging) / LIB_DIR
        _pip_target(requirements, target)
        if missing := missing_requirements(target, python):
            _pip_target(missing, target)
        # Scripts carry the build machine's interpreter path; the image runs modules instead.
        shutil.rmtree(target / "bin", ignore_errors=True)
        _tar_tree(Path(staging), dest)


def _pip_target(requirements: Sequence[str], target: Path) -> None:
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--only-binary=:all:",
            f"--target={target}",
            *requirements,
        ],
        "pip install",
    )


def missing_requirements(site: Path, python: str) -> list[str]:
    """What the distributions installed in `site` require on Python `python` but is not
    installed there."""
    installed = {canonicalize_name(meta.name.split("-")[0]) for meta in site.glob("*.dist-info")}
    environment = {"python_full_version": python, "python_version": python.rsplit(".", 1)[0]}
    missing: set[str] = set()
    for metadata in site.glob("*.dist-info/METADATA"):
        for line in metadata.read_text().splitlines():
            if not line.startswith("Requires-Dist: "):
                continue
            requirement = Requirement(line.removeprefix("Requires-Dist: "))
            if requirement.marker is not None and not requirement.marker.evaluate(
                {**environment, "extra": ""}
            ):
                continue
            if canonicalize_name(requirement.name) not in installed:
                missing.add(str(requirement).split(";")[0])
    return sorted(missing)


def python_version(base_tar: Path) -> str:
    """The Python version inside a Debian root filesystem tarball (its dpkg database)."""
    with tarfile.open(base_tar) as tar:
        member = tar.extractfile("./var/lib/dpkg/status")
        assert member is not None
        status = member.read().decode()
    for stanza in status.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
        )
        if re.fullmatch(r"python3\.\d+-minimal", fields.get("Package", "")):
            return fields["Version"].split("-")[0]
    raise RuntimeError(f"no python3.x-minimal in {base_tar}")


def files_layer(files: dict[str, Path], dest: Path) -> None:
    """Files and folders copied to the given paths inside the image."""
    with tempfile.TemporaryDirectory() as staging:
        for inside, source in files.items():
            target = Path(staging) / inside
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, target)
        _tar_tree(Path(staging), dest)


def _lock_pins(lock: Path) -> list[str]:
    return [
        line.strip()
        for line in lock.read_text().splitlines()
        if line.strip() and not line.startswith(("#", " ", "-"))
    ]


def modelpilot_image(repo: Path = REPO_ROOT) -> Image:
    """The operator, meter, activator and GPU agent: `python3 -m modelpilot ...`."""
    lock = repo / "requirements.lock"
    package = repo / "operator" / "modelpilot"
    pins = _lock_pins(lock)
    return Image(
        name="modelpilot.local/modelpilot",
        layers=(
            base_layer(),
            Layer(
                "deps",
                _digest(BUILD_VERSION + lock.read_text()),
                lambda dest: pip_layer(["--no-deps", *pins], _base_python(), dest),
            ),
            Layer(
                "app",
                _digest(BUILD_VERSION + tree_digest(package)),
                lambda dest: files_layer({f"{LIB_DIR}/modelpilot": package}, dest),
            ),
        ),
        entrypoint=("python3", "-m", "modelpilot"),
        env=PYTHON_ENV,
    )


def sample_model_image(repo: Path = REPO_ROOT) -> Image:
    """examples/sample-model: server.py on aiohttp at the lock file's version."""
    server = repo / "examples" / "sample-model" / "server.py"
    lock = repo / "requirements.lock"
    constraints = _lock_pins(lock)
    aiohttp = next(pin for pin in constraints if pin.startswith("aiohttp=="))
    return Image(
        name="modelpilot.local/sample-model",
        layers=(
            base_layer(),
            Layer(
                "aiohttp",
                _digest(BUILD_VERSION + lock.read_text()),
                # aiohttp and what it needs, each at the lock file's version.
                lambda dest: pip_layer([aiohttp, "--constraint", str(lock)], _base_python(), dest),
            ),
            Layer(
                "server",
                _digest(BUILD_VERSION + server.read_text()),
                lambda dest: files_layer({"app/server.py": server}, dest),
            ),
        ),
        entrypoint=("python3", "/app/server.py", "--host", "0.0.0.0"),
        env=PYTHON_ENV,
    )


def _base_python() -> str:
    version = python_version(layer_tar(base_layer(), print))
    if not version.startswith(PYTHON_MINOR + "."):
        raise RuntimeError(f"{SUITE} has Python {version}, the Dockerfiles {PYTHON_MINOR}")
    return version


def base_layer() -> Layer:
    return Layer("base", _digest(f"{BUILD_VERSION} {SUITE} {' '.join(BASE_PACKAGES)}"), build_base)


def layer_tar(layer: Layer, log: Callable[[str], None] = print) -> Path:
    path = CACHE / "layers" / f"{layer.name}-{layer.key[:16]}.tar"
    if not path.exists():
        log(f"building the {layer.name} layer...")
        path.parent.mkdir(parents=True, exist_ok=True)
        # mmdebstrap picks its output format from the name: keep ".tar" at the end.
        partial = path.with_suffix(".partial.tar")
        partial.unlink(missing_ok=True)
        layer.build(partial)
        partial.rename(path)
    return path


def build(image: Image, log: Callable[[str], None] = print) -> Path:
    """The image as an OCI archive (a tar of an OCI layout) under the cache; built only when
    its content changed."""
    archive = CACHE / f"{image.name.rsplit('/', 1)[-1]}-{image.tag}.oci.tar"
    if archive.exists():
        return archive
    umoci = find_binary("umoci")
    with tempfile.TemporaryDirectory(dir=CACHE.parent) as work:
        layout = f"{work}/layout"
        ref = f"{layout}:{image.tag}"
        _run([umoci, "init", f"--layout={layout}"], "umoci init")
        _run([umoci, "new", f"--image={ref}"], "umoci new")
        for layer in image.layers:
            tar = layer_tar(layer, log)
            _run(
                [umoci, "raw", "add-layer", "--no-history", f"--image={ref}", str(tar)],
                f"umoci add-layer {layer.name}",
            )
        config = [umoci, "config", "--no-history", f"--image={ref}", f"--config.user={image.user}"]
        config += [f"--config.entrypoint={arg}" for arg in image.entrypoint]
        config += [f"--config.env={env}" for env in image.env]
        config += [f"--config.workingdir={image.workdir}"]
        config += [f"--config.exposedports={port}/tcp" for port in image.ports]
        _run(config, "umoci config")
        _run([umoci, "gc", f"--layout={layout}"], "umoci gc")
        partial = archive.with_suffix(".partial")
        with tarfile.open(partial, "w") as out:
            for child in sorted(Path(layout).iterdir()):
                out.add(child, arcname=child.name)
        partial.rename(archive)
    return archive


def import_into(archive: Path, ref: str, containerd_socket: Path) -> None:
    """Load the archive into a containerd's `k8s.io` namespace (the CRI's) as `ref`."""
    # The layout's tag is the image's tag, so base-name:tag is `ref`.
    _run(
        [
            find_binary("ctr"),
            f"--address={containerd_socket}",
            "--namespace=k8s.io",
            "images",
            "import",
            f"--base-name={ref.rsplit(':', 1)[0]}",
            str(archive),
        ],
        f"importing {ref}",
    )


def pause_image() -> Image:
    """The pod sandbox: Kubernetes' own pause.c (from the source package the node's binaries
    are built from), compiled static; one file."""
    source = next((CACHE_DIR / "src").glob("kubernetes-1.20*/build/pause/linux/pause.c"), None)
    if source is None:
        raise RuntimeError("pause.c not found: run `bash hack/build-kube.sh`")

    def build_layer(dest: Path) -> None:
        with tempfile.TemporaryDirectory() as work:
            binary = Path(work) / "pause"
            _run(
                [
                    find_binary("gcc"),
                    "-Os",
                    "-static",
                    "-DVERSION=3.2",
                    "-o",
                    str(binary),
                    str(source),
                ],
                "compiling pause",
            )
            files_layer({"pause": binary}, dest)

    return Image(
        name="modelpilot.local/pause",
        layers=(Layer("pause", _digest(BUILD_VERSION + source.read_text()), build_layer),),
        entrypoint=("/pause",),
        user="65535:65535",
    )


def all_images() -> list[Image]:
    return [pause_image(), modelpilot_image(), sample_model_image()]
