"""mDNS for a served hall server: advertise ``_invigil._tcp`` and feed the agents it sees to the live bus.

Runs in the process that serves the dashboard (role ``all`` or ``live``), only on the addresses of the
``mdns_addresses`` setting, or of the ``hall_interface`` when ``mdns`` is on (never all interfaces).
Campus Wi-Fi often filters mDNS: the roster then works from enrolment alone and the dashboard says
discovery sees nothing (docs/discovery.md).
Started in each worker after gunicorn forked (zeroconf's threads do not survive a fork).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from flask import Flask

from hall_server.live.discovery import AgentBrowser, HallAdvertiser, SeenAgent
from hall_server.store.db import connect

log = logging.getLogger("invigil.mdns")


def _addresses(setting: str) -> list[str]:
    return [part.strip() for part in setting.split(",") if part.strip()]


def interface_addresses(name: str) -> list[str]:
    """The IPv4 addresses of interface ``name`` (empty when it does not exist or has none)."""
    import ifaddr  # zeroconf's own dependency for listing interfaces

    return [
        str(ip.ip)
        for adapter in ifaddr.get_adapters()
        if adapter.nice_name == name or adapter.name == name
        for ip in adapter.ips
        if isinstance(ip.ip, str)
    ]


def discovery_addresses(settings: dict[str, Any]) -> list[str]:
    """``mdns_addresses`` when set, else the hall interface's addresses when ``mdns`` is on."""
    addresses = _addresses(settings["mdns_addresses"])
    if addresses or not settings["mdns"]:
        return addresses
    addresses = interface_addresses(settings["hall_interface"])
    if not addresses:
        log.error(
            "mDNS: interface %s has no IPv4 address (or does not exist): discovery stays off; check "
            "INVIGIL_HALL_INTERFACE",
            settings["hall_interface"],
        )
    return addresses


def fingerprint(cert_file: str | None) -> str:
    """SHA-256 of the server certificate (DER), so an agent can tell the real hall from an impostor."""
    if not cert_file:
        return ""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def _hall_and_exam(data_dir: Path) -> tuple[str, str]:
    db = connect(data_dir)
    try:
        hall = db.execute("SELECT id FROM hall ORDER BY id LIMIT 1").fetchone()
        exam = db.execute(
            "SELECT id FROM exam WHERE ended_at IS NULL AND hall_id = ? ORDER BY starts_at LIMIT 1",
            [hall[0] if hall else None],
        ).fetchone()
    finally:
        db.close()
    return (str(hall[0]) if hall else "unprovisioned", str(exam[0]) if exam else "")


def start_for_app(
    app: Flask, api_port: int, cert_file: str | None
) -> tuple[HallAdvertiser, AgentBrowser] | None:
    """Advertise and browse when ``mdns_addresses`` is set; returns both, or None when discovery is off."""
    hall_state = app.extensions["invigil"]
    addresses = discovery_addresses(hall_state.settings)
    bus = app.extensions.get("invigil_live")
    if not addresses or bus is None or not bus.serves_browsers:
        return None
    hall_id, exam_id = _hall_and_exam(hall_state.data_dir)

    def changed(agent: SeenAgent) -> None:
        log.info("mDNS: agent %s %s (%s)", agent.agent_id, "gone" if agent.gone else "present", agent.state)

    browser = AgentBrowser(addresses=addresses, on_change=changed)
    advertiser = HallAdvertiser(
        addresses=addresses,
        hall_id=hall_id,
        exam_id=exam_id or None,
        api_port=api_port,
        fingerprint=fingerprint(cert_file),
    )
    bus.discovered = lambda: {agent.agent_id: not agent.gone for agent in browser.snapshot()}
    bus.discovery_health = browser.discovery_health
    log.info("mDNS: advertising hall %s on %s, port %d", hall_id, ", ".join(addresses), api_port)
    return advertiser, browser


def api_port(bind: list[str] | Any) -> int:
    """The port of the first ``HOST:PORT`` gunicorn binds."""
    first = bind[0] if isinstance(bind, list) else str(bind)
    return int(first.rsplit(":", 1)[1])
