"""``GET /proxy.pac``: the proxy auto-config file for explicit proxy mode (docs/appliance.md).

Laptops (or the campus's WPAD/DHCP option 252) point at ``https://<appliance>:8443/proxy.pac``. It sends
every URL to the allowlist proxy on this appliance, at the address the laptop used to fetch the file and
the ``proxy_port`` setting (``INVIGIL_PROXY_PORT`` in /etc/invigil/invigil.conf), except the appliance
itself (the agent API and the dashboard), which is reached directly. There is no ``DIRECT`` fallback: a
laptop whose proxy is down reaches nothing, which the invigilator sees, instead of everything.
"""

from __future__ import annotations

import ipaddress

from flask import Flask, Response, abort, request

PAC_TYPE = "application/x-ns-proxy-autoconfig"


def pac_file(appliance_host: str, proxy_port: int) -> str:
    """The PAC text for an appliance reached as ``appliance_host`` (pure)."""
    return (
        "function FindProxyForURL(url, host) {\n"
        f'  if (host == "{appliance_host}") return "DIRECT";\n'
        f'  return "PROXY {appliance_host}:{proxy_port}";\n'
        "}\n"
    )


def _host_of_request() -> str:
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not host or any(not (c.isalnum() or c in "-.") for c in host):
            abort(400, "ask for /proxy.pac by the appliance's address or DNS name")
    return host


def init_app(app: Flask) -> None:
    @app.get("/proxy.pac")
    @app.get("/wpad.dat")
    def proxy_pac() -> Response:
        port = int(app.extensions["invigil"].settings["proxy_port"])
        if not port:
            abort(
                404, "no proxy auto-config: set INVIGIL_PROXY_PORT (explicit proxy mode, docs/appliance.md)"
            )
        return Response(pac_file(_host_of_request(), port), content_type=PAC_TYPE)
