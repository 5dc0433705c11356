"""Read the agent bundle: the JSON file the organiser hands out with the agent (docs/provisioning.md).

The bundle names the hall, the protocol version, the hall server's URLs and the hall CA that signs the
server's certificate. It is read once, at start (:func:`load_bundle`); a bundle for another protocol
version, or one whose CA fingerprint does not match its PEM, is refused with a message for the student.
``provisioning.bundle`` writes it (the agent may not import provisioning, so the checks are repeated here
with the stdlib only).
"""

from __future__ import annotations

import hashlib
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from invigil import protocol as p

BUNDLE_FORMAT = "invigil-agent-bundle"
BUNDLE_VERSION = 1


class BundleError(ValueError):
    """The bundle file cannot be used; the message says what to do."""


@dataclass(frozen=True)
class AgentBundle:
    """What the agent needs from the bundle."""

    hall: str
    server_urls: tuple[str, ...]
    ca_pem: str
    ca_sha256: str


def _ca_digest(ca_pem: str) -> str:
    try:
        der = ssl.PEM_cert_to_DER_cert(ca_pem.strip() + "\n")
    except ValueError:
        raise BundleError(
            "the bundle's ca_pem is not a PEM certificate: ask the hall for a new bundle"
        ) from None
    return hashlib.sha256(der).hexdigest()


def parse_bundle(text: str) -> AgentBundle:
    """Check a bundle's text (pure); raises :class:`BundleError` naming the first problem."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise BundleError("this file is not an Invigil agent bundle (not JSON)") from None
    if not isinstance(raw, dict) or raw.get("format") != BUNDLE_FORMAT:
        raise BundleError(f'this file is not an Invigil agent bundle (no "format": "{BUNDLE_FORMAT}")')
    if raw.get("format_version") != BUNDLE_VERSION:
        raise BundleError(
            f"this bundle has format version {raw.get('format_version')!r}; "
            f"this agent reads {BUNDLE_VERSION}: "
            "install the agent that comes with the bundle"
        )
    if raw.get("protocol_version") != p.PROTOCOL_VERSION:
        raise BundleError(
            f"this bundle is for hall protocol {raw.get('protocol_version')!r} but this agent speaks "
            f"{p.PROTOCOL_VERSION}: install the agent that comes with the hall's bundle"
        )
    urls = raw.get("server_urls")
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise BundleError("the bundle names no hall server (server_urls): ask the hall for a new bundle")
    for url in urls:
        if urlsplit(url).scheme != "https":
            raise BundleError(f"the bundle's server URL {url!r} is not https")
    ca_pem = raw.get("ca_pem")
    if not isinstance(ca_pem, str):
        raise BundleError("the bundle has no hall CA (ca_pem): ask the hall for a new bundle")
    digest = _ca_digest(ca_pem)
    if digest != raw.get("ca_sha256"):
        raise BundleError("the bundle's ca_sha256 does not match its ca_pem: the file was altered")
    hall = raw.get("hall")
    return AgentBundle(str(hall) if hall else "", tuple(u.rstrip("/") for u in urls), ca_pem, digest)


def load_bundle(path: str | Path) -> AgentBundle:
    """Read and check the bundle at ``path`` (``--bundle FILE``)."""
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise BundleError(f"cannot read the bundle {path}: {exc.strerror or exc}") from None
    return parse_bundle(text)


def write_ca_file(bundle: AgentBundle, state_dir: Path) -> Path:
    """Write the hall CA where ``ssl`` can load it (inside the state dir, deleted when the agent leaves)."""
    path = state_dir / "hall-ca.pem"
    path.write_text(bundle.ca_pem, "ascii")
    return path
