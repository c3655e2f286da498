"""Certificates made in the test, with the openssl command line: a CA, and server or client
certificates it signs (127.0.0.1 and localhost as subject alternative names)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl")


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None, "openssl is not installed"
    proc = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def make_ca(directory: Path, name: str = "ca") -> Pair:
    """A self-signed CA."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", f"/CN=queuewatch test {name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=directory)
    return Pair(directory / f"{name}.crt", directory / f"{name}.key")


def make_cert(directory: Path, ca: Pair, name: str, *, client: bool = False) -> Pair:
    """A certificate for ``name`` signed by ``ca``: a server's for 127.0.0.1/localhost, or
    a client's (``client``)."""
    usage = "clientAuth" if client else "serverAuth"
    ext = directory / f"{name}.ext"
    ext.write_text(f"subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n"
                   "basicConstraints=CA:FALSE\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca.cert), "-CAkey", str(ca.key),
             "-CAcreateserial", "-days", "2", "-extfile", ext.name, "-out", f"{name}.crt", cwd=directory)
    (directory / f"{name}.key").chmod(0o600)
    return Pair(directory / f"{name}.crt", directory / f"{name}.key")
