"""The hall's TLS directory (``DATA_DIR/tls``, 0700): ``ca.pem``, ``ca.key``, ``server.pem``, ``server.key``,
each 0600.

``init_tls`` keeps an existing hall CA (the agent bundles already handed out trust it) and reissues only
the server certificate when its names change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from hall_server.store import private_files
from provisioning import certs
from provisioning.errors import Conflict, NotFound, ProvisioningError

CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.pem", "ca.key", "server.pem", "server.key"
#: A server certificate this close to expiry is reissued by ``certs init`` even if its names are unchanged.
RENEW_BEFORE = timedelta(days=30)


@dataclass(frozen=True)
class TlsInit:
    directory: Path
    ca_created: bool
    server_issued: bool
    names: list[str]


def default_dir(data_dir: Path) -> Path:
    return data_dir / "tls"


def ca_common_name(hall: str) -> str:
    return f"Invigil hall CA: {hall}"[:64]


def fingerprint(cert_pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _names(cert: x509.Certificate) -> list[str]:
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for name in alt]


def _common_name(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # InvalidSignature, ValueError (another issuer name) or TypeError (key type)
        return False
    return True


def init_tls(directory: Path, hall: str, names: list[str], force: bool = False) -> TlsInit:
    """Make (or keep) the hall CA and make sure the server certificate names exactly ``names``."""
    names = list(dict.fromkeys(name.strip() for name in names if name.strip()))
    if not names:
        raise ProvisioningError("give the server's host name or IP address with --name (repeatable)")
    private_files.make_dirs(directory)
    ca_pem, ca_key = directory / CA_CERT, directory / CA_KEY
    ca_created = False
    if ca_pem.exists() and not force:
        if not ca_key.exists():
            raise NotFound(f"{ca_pem} exists without {ca_key}; restore the key, or start over with --force")
        ca = certs.Issued(ca_pem.read_bytes(), ca_key.read_bytes())
        existing_cn = _common_name(x509.load_pem_x509_certificate(ca.cert_pem))
        if existing_cn != ca_common_name(hall):
            raise Conflict(
                f"{ca_pem} is {existing_cn!r}, not the CA of hall {hall!r}; use another --out, or --force to "
                "replace it (every agent bundle made with the old CA must then be made again)"
            )
    else:
        ca = certs.make_ca(hall)
        certs.write_pair(ca, ca_pem, ca_key)
        ca_created = True
    server_pem = directory / SERVER_CERT
    if not ca_created and server_pem.exists() and (directory / SERVER_KEY).exists():
        current = x509.load_pem_x509_certificate(server_pem.read_bytes())
        ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
        fresh = current.not_valid_after_utc - datetime.now(UTC) > RENEW_BEFORE
        if sorted(_names(current)) == sorted(names) and _issued_by(current, ca_cert) and fresh:
            return TlsInit(directory, False, False, names)
    certs.write_pair(certs.make_server_cert(ca, names), server_pem, directory / SERVER_KEY)
    return TlsInit(directory, ca_created, True, names)


def describe(directory: Path) -> dict[str, Any]:
    """What ``certs show`` prints: subjects, names, validity, fingerprints, and whether the chain holds."""
    ca_pem = directory / CA_CERT
    if not ca_pem.exists():
        raise NotFound(f"no hall CA in {directory}; make one with `invigil-provision certs init`")
    ca = x509.load_pem_x509_certificate(ca_pem.read_bytes())
    info: dict[str, Any] = {
        "directory": str(directory),
        "ca": {
            "subject": _common_name(ca),
            "not_after": ca.not_valid_after_utc.isoformat(),
            "sha256": fingerprint(ca_pem.read_bytes()),
        },
        "server": None,
    }
    server_pem = directory / SERVER_CERT
    if server_pem.exists():
        server = x509.load_pem_x509_certificate(server_pem.read_bytes())
        info["server"] = {
            "subject": _common_name(server),
            "names": _names(server),
            "not_after": server.not_valid_after_utc.isoformat(),
            "sha256": fingerprint(server_pem.read_bytes()),
            "issued_by_hall_ca": _issued_by(server, ca),
        }
    return info


def server_names(directory: Path) -> list[str]:
    server_pem = directory / SERVER_CERT
    if not server_pem.exists():
        return []
    return _names(x509.load_pem_x509_certificate(server_pem.read_bytes()))
