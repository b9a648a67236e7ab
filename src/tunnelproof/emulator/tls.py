"""A test CA and a server certificate for wss (the Python SDK can only use wss).

The CA is written to ``<dir>/emulator-ca.pem`` so any client can trust it
(``ssl.create_default_context(cafile=...)`` or ``SSL_CERT_FILE``). With a state
directory the CA key is kept too, so a restarted emulator keeps the same CA and clients
configured with the old CA file still connect.
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme

CA_FILE = "emulator-ca.pem"
CA_KEY_FILE = "emulator-ca.key"


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """The server's SSL context and where its CA certificate is on disk."""

    context: ssl.SSLContext
    ca_file: Path


def make_tls(directory: Path | None = None, hosts: tuple[str, ...] = ()) -> TlsMaterial:
    """Load or create a CA in ``directory`` (a new temp dir when ``None``) and a server cert."""
    where = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="tp-emu-"))
    where.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = where / CA_FILE, where / CA_KEY_FILE
    if cert_path.exists() and key_path.exists():
        ca = trustme.CA.from_pem(cert_path.read_bytes(), key_path.read_bytes())
    else:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(cert_path))
        ca.private_key_pem.write_to_path(str(key_path))
        key_path.chmod(0o600)
    names = ("127.0.0.1", "localhost", "::1", *hosts)
    leaf = ca.issue_cert(*dict.fromkeys(names))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    return TlsMaterial(context, cert_path)


def client_context(ca_file: str | Path) -> ssl.SSLContext:
    """A client SSL context that trusts the emulator's CA."""
    return ssl.create_default_context(cafile=str(ca_file))
