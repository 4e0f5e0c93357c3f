"""Keys and certificates for the local API server, made once per state folder with openssl."""

import subprocess
from pathlib import Path

from modelpilot.devcluster.binaries import find_binary


def _openssl(*args: str) -> None:
    subprocess.run([find_binary("openssl"), *args], check=True, capture_output=True)


# Where the API server is reached: loopback, the node's bridge address (pods reach it
# there through the `kubernetes` Service, 10.0.0.1) and the Service's DNS names.
SERVING_NAMES = (
    "IP:127.0.0.1,IP:10.88.0.1,IP:10.0.0.1,DNS:localhost,"
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
)


def ensure_pki(pki_dir: Path) -> None:
    """A CA, a serving certificate for SERVING_NAMES, and the service-account key pair."""
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
    ext = pki_dir / "serving.ext"
    ext_text = (
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={SERVING_NAMES}\n"
    )
    # A certificate made for fewer names (an older state folder) is made again.
    if not crt.exists() or not ext.exists() or ext.read_text() != ext_text:
        ext.write_text(ext_text)
        _sign(pki_dir, key, csr, crt, "/CN=127.0.0.1", ext)
    if not sa_key.exists():
        _openssl("genrsa", "-out", str(sa_key), "2048")
        _openssl("rsa", "-in", str(sa_key), "-pubout", "-out", str(sa_pub))


def ensure_client_cert(pki_dir: Path, name: str, user: str, group: str | None = None) -> None:
    """`name`.crt/.key: a client certificate from the CA for `user` (CN) in `group` (O), as
    the API server's x509 authenticator reads them."""
    key, csr, crt = pki_dir / f"{name}.key", pki_dir / f"{name}.csr", pki_dir / f"{name}.crt"
    if crt.exists():
        return
    subject = f"/CN={user}" + (f"/O={group}" if group else "")
    ext = pki_dir / "client.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n"
    )
    _sign(pki_dir, key, csr, crt, subject, ext)


def _sign(pki_dir: Path, key: Path, csr: Path, crt: Path, subject: str, ext: Path) -> None:
    """A new key and a certificate for `subject` signed by the CA, with `ext`'s extensions."""
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        subject,
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
        str(pki_dir / "ca.crt"),
        "-CAkey",
        str(pki_dir / "ca.key"),
        "-CAcreateserial",
        "-days",
        "3650",
        "-extfile",
        str(ext),
        "-out",
        str(crt),
    )
