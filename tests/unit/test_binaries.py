import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelpilot.devcluster import binaries
from modelpilot.devcluster.binaries import MissingBinaryError, find_binary


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_kubebuilder_assets_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    _executable(assets / "kube-apiserver")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    assert find_binary("kube-apiserver") == str(assets / "kube-apiserver")


def test_cache_is_used_without_assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setattr(binaries, "CACHE_DIR", tmp_path)
    (tmp_path / "bin").mkdir()
    built = _executable(tmp_path / "bin" / "kube-apiserver")
    assert find_binary("kube-apiserver") == str(built)


def test_missing_binary_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setattr(binaries, "CACHE_DIR", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingBinaryError, match=r"kube-apiserver not found: run `make setup`"):
        find_binary("kube-apiserver")
    with pytest.raises(MissingBinaryError, match=r"apt-get install prometheus"):
        find_binary("prometheus")


def test_cluster_up_without_binaries_prints_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "MODELPILOT_CACHE": str(tmp_path / "cache"), "PATH": str(tmp_path)}
    env.pop("KUBEBUILDER_ASSETS", None)
    result = subprocess.run(
        [sys.executable, "-m", "modelpilot.devcluster", "up", "--state-dir", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: etcd not found: apt-get install etcd-server")
