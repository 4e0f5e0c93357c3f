"""Keys and certificates for the local API server, made once per state folder with openssl."""

import subprocess
from pathlib import Path

from modelpilot.devcluster.binaries import find_binary


def _openssl(*args: str) -> None:
    subprocess.run([find_binary("openssl"), *args], check=True, capture_output=True)


def ensure_pki(pki_dir: Path) -> None:
    """A CA, a serving certificate for 127.0.0.1/localhost, and the service-account key pair."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = pki_dir / "ca.key", pki_dir / "ca.crt"
    key, csr, crt = pki_dir / "serving.key", pki_dir / "serving.csr", pki_dir / "serving.crt"
    sa_key, sa_pub = pki_dir / "sa.key", pki_dir / "sa.pub"
    if not ca_crt.exists():
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=modelpilot-local-ca",
            "-keyout",
            str(ca_key),
            "-out",
            str(ca_crt),
        )
    if not crt.exists():
        ext = pki_dir / "serving.ext"
        ext.write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        )
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(csr),
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_crt),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            str(ext),
            "-out",
            str(crt),
        )
    if not sa_key.exists():
        _openssl("genrsa", "-out", str(sa_key), "2048")
        _openssl("rsa", "-in", str(sa_key), "-pubout", "-out", str(sa_pub))
