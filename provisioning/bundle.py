"""The agent bundle: the JSON file an organiser hands to students with the agent (docs/provisioning.md).

It tells the agent which hall it belongs to, which protocol it must speak, where the hall server is and
which CA signs its certificate. It holds no secret (no key, no join code): it may be posted on the course
page. Made by ``invigil-provision bundle``; read by the agent (``invigil-agent --bundle FILE``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from invigil.protocol import PROTOCOL_VERSION
from invigil.timeutil import to_wire, utc_now
from provisioning.errors import ProvisioningError

BUNDLE_FORMAT = "invigil-agent-bundle"
BUNDLE_VERSION = 1


def check_server_url(url: str, certificate_names: list[str]) -> str:
    """An ``https://HOST[:PORT]`` URL whose host the server certificate names (else agents refuse it)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ProvisioningError(f"--server-url {url!r} must look like https://HOST:PORT (no path)")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ProvisioningError(f"--server-url {url!r} has a bad port") from None
    host = parts.hostname
    wanted = {_canonical(name) for name in certificate_names}
    if certificate_names and _canonical(host) not in wanted:
        raise ProvisioningError(
            f"the server certificate does not name {host!r} (it names {', '.join(certificate_names)}); "
            f"add it with `invigil-provision certs init --name {host} ...` or use one of those names"
        )
    return url.rstrip("/")


def _canonical(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return host.lower().rstrip(".")


def build_bundle(
    hall: str,
    ca_pem: bytes,
    server_urls: list[str],
    exam: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The bundle as a dict (see docs/provisioning.md for each field). Pure apart from the creation time."""
    if not server_urls:
        raise ProvisioningError("give at least one --server-url, e.g. --server-url https://10.0.0.1:8443")
    cert = x509.load_pem_x509_certificate(ca_pem)
    return {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "protocol_version": PROTOCOL_VERSION,
        "hall": hall,
        "exam": exam,
        "server_urls": list(dict.fromkeys(server_urls)),
        "ca_pem": ca_pem.decode("ascii"),
        "ca_sha256": hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
        "created_at": to_wire(utc_now()),
    }


def dumps(bundle: dict[str, Any]) -> str:
    return json.dumps(bundle, indent=2, sort_keys=False) + "\n"


def parse_bundle(text: str) -> dict[str, Any]:
    """Check a bundle file the way an agent must: right format, our protocol, a CA that parses.

    The reference reader for the agent's own (the agent may not import provisioning).
    """
    try:
        bundle = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProvisioningError(f"not an agent bundle (invalid JSON: {exc})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise ProvisioningError('not an agent bundle (no "format": "invigil-agent-bundle")')
    if bundle.get("format_version") != BUNDLE_VERSION:
        raise ProvisioningError(
            f"bundle format version {bundle.get('format_version')} is not {BUNDLE_VERSION}"
        )
    if bundle.get("protocol_version") != PROTOCOL_VERSION:
        raise ProvisioningError(
            f"bundle speaks protocol {bundle.get('protocol_version')}, this version {PROTOCOL_VERSION}"
        )
    urls = bundle.get("server_urls")
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise ProvisioningError("bundle has no server_urls")
    ca_pem = bundle.get("ca_pem")
    try:
        cert = x509.load_pem_x509_certificate(str(ca_pem).encode("ascii"))
    except ValueError:
        raise ProvisioningError("bundle's ca_pem is not a PEM certificate") from None
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    if digest != bundle.get("ca_sha256"):
        raise ProvisioningError("bundle's ca_sha256 does not match its ca_pem")
    return bundle
