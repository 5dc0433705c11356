"""The Invigil mitmproxy addon: enforces each laptop's exam's network policy and reports every decision.

Loaded by ``mitmdump -s netpolicy/addon.py`` (``invigil-proxy`` builds that command line; docs/proxy.md).
Imports only the standard library, mitmproxy, ``invigil`` and ``netpolicy``: it runs in ``.venv-proxy``.

Each connection is decided by the laptop behind its client address (the connection's peer address,
``client.peername``; no header is ever trusted for it): the policy file the hall server publishes maps each
address to its running exam (``invigil.seatpolicy``), and that exam's own policy and interception setting
decide. An address in no running exam may reach only the hall server's agent API, and is told to start the
agent and join the exam. A plain one-exam policy file gives every laptop that one policy, with
``invigil_intercept`` and ``invigil_exam_title``.

Without interception it decides on the CONNECT host and the TLS SNI name and passes allowed TLS through
untouched; with interception (the hall CA is trusted on the laptops) it also decides every URL and answers
blocked ones with an HTML page naming the exam's policy. The decisions themselves are pure functions in
``netpolicy.gate``.

Above every policy stands the appliance rule (``netpolicy.appliance``): whatever the policy allows, no
connection goes to loopback or to this machine's own addresses, except to the hall server's agent API. It
is decided on the resolved addresses at the CONNECT and on each plain request (so the laptop is told why),
and again just before every upstream connection is opened. A tunnel (TLS passed through, or raw TCP in a
CONNECT) is then pinned to the address that was checked, so a name whose DNS answer changes in between
cannot carry it elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http, tls, udp
from mitmproxy.proxy import server_hooks

from invigil.policy import Decision
from netpolicy.appliance import Destination, Endpoint, agent_api, choose_address, is_own_address
from netpolicy.events import SiteEventSender, make_site_event, read_token
from netpolicy.gate import (
    PolicyFile,
    Seat,
    block_page,
    canonical_or_raw,
    decide_request,
    decide_tls,
    host_of_header,
    seat_of,
)

log = logging.getLogger("invigil.proxy")


def _mode_name(client: Any) -> str:
    mode = getattr(client, "proxy_mode", None)
    return str(getattr(mode, "type_name", "regular"))


class InvigilPolicy:
    """mitmproxy addon (``load`` declares options, ``configure`` rebuilds state, hooks decide)."""

    def __init__(self) -> None:
        self.policy_file: PolicyFile | None = None
        self.sender: SiteEventSender | None = None
        self.refused: set[str] = set()  # client connection ids whose TLS was refused
        self.tunnels: dict[str, str] = {}  # client connection id -> its tunnel's server connection id
        self.agent_api: Endpoint | None = None
        self._watcher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------------------ options

    def load(self, loader: Any) -> None:
        """Once, when mitmproxy loads the script: declare the options."""
        loader.add_option(
            "invigil_policy_file",
            str,
            "",
            "The hall server's per-seat policy file, or one exam's policy for every laptop (docs/proxy.md).",
        )
        loader.add_option(
            "invigil_policy_poll_ms", int, 2000, "How often to check the policy file for changes."
        )
        loader.add_option(
            "invigil_intercept",
            bool,
            False,
            "Intercept TLS (the hall CA is trusted on the laptops): decide every URL, serve a block page. "
            "With a per-seat file each exam says so itself; this then applies to laptops in no exam.",
        )
        loader.add_option(
            "invigil_exam_title", str, "", "The exam's title on the block page (a one-exam policy file)."
        )
        loader.add_option(
            "invigil_server_url", str, "", "Hall server base URL for site events ('' = log them only)."
        )
        loader.add_option(
            "invigil_service_token_file",
            str,
            "",
            "File with the hall's service token, <data_dir>/service.token (needed with invigil_server_url).",
        )
        loader.add_option("invigil_server_ca", str, "", "CA file to verify an https:// hall server.")
        loader.add_option("invigil_event_queue", int, 10_000, "Site events kept while the server is away.")
        loader.add_option("invigil_retry_max_s", int, 10, "Longest wait between retries to the server.")

    def configure(self, updated: set[str]) -> None:
        """At start and on every option change: validate, rebuild what changed."""
        options = ctx.options
        if "invigil_policy_file" in updated:
            if not options.invigil_policy_file:
                raise exceptions.OptionsError("invigil_policy_file is required: the exam's policy file")
            policy_file = PolicyFile(Path(options.invigil_policy_file))
            try:
                document = policy_file.load()
            except (OSError, UnicodeDecodeError) as exc:
                raise exceptions.OptionsError(f"cannot read policy file {policy_file.path}: {exc}") from None
            except ValueError as exc:  # PolicyError, SeatPolicyError: every problem, numbered
                raise exceptions.OptionsError(f"policy file {policy_file.path} has errors:\n{exc}") from None
            self.policy_file = policy_file
            log.info("policy %s loaded: %s", policy_file.path, document.summary())
        sender_options = {
            "invigil_server_url",
            "invigil_service_token_file",
            "invigil_server_ca",
            "invigil_event_queue",
            "invigil_retry_max_s",
        }
        if sender_options & updated:
            url = options.invigil_server_url
            if url and not url.startswith(("http://", "https://")):
                raise exceptions.OptionsError(
                    f"invigil_server_url must start with http:// or https://: {url!r}"
                )
            try:
                self.agent_api = agent_api(url)
            except ValueError as exc:
                raise exceptions.OptionsError(f"invigil_server_url: {exc}") from None
            token = ""
            if url:
                if not options.invigil_service_token_file:
                    raise exceptions.OptionsError(
                        "invigil_service_token_file is required with invigil_server_url: the hall server "
                        "accepts site events only with its service token (<data_dir>/service.token)"
                    )
                try:
                    token = read_token(options.invigil_service_token_file)
                except (OSError, ValueError) as exc:
                    raise exceptions.OptionsError(f"cannot read the service token: {exc}") from None
            if self.sender:
                self.sender.close(timeout_s=1.0)
            self.sender = None
            if url:
                self.sender = SiteEventSender(
                    url,
                    token=token,
                    ca_file=options.invigil_server_ca,
                    max_queue=max(1, options.invigil_event_queue),
                    retry_max_s=max(1, options.invigil_retry_max_s),
                ).start()

    def running(self) -> None:
        """When the proxy is up: start watching the policy file."""
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_policy())
            if is_own_address("192.0.2.1"):  # TEST-NET-1: held by no machine
                log.error(
                    "every address binds here (net.ipv4.ip_nonlocal_bind is on), so every destination looks "
                    "like this appliance and the proxy refuses all connections: turn ip_nonlocal_bind off"
                )

    def done(self) -> None:
        """At shutdown: stop watching, deliver what is queued (bounded)."""
        if self._watcher is not None:
            self._watcher.cancel()
        if self.sender is not None:
            self.sender.close(timeout_s=3.0)

    async def _watch_policy(self) -> None:
        while True:
            await asyncio.sleep(max(50, ctx.options.invigil_policy_poll_ms) / 1000)
            self.reload_policy()

    def reload_policy(self) -> None:
        """Take a changed policy file; a bad one leaves the previous policy in force and says why."""
        if self.policy_file is None:
            return
        changed, problem = self.policy_file.reload_if_changed()
        if problem:
            log.error(
                "policy %s not reloaded, keeping the previous policy:\n%s", self.policy_file.path, problem
            )
        elif changed and self.policy_file.document is not None:
            log.info("policy %s reloaded: %s", self.policy_file.path, self.policy_file.document.summary())

    def seat(self, client: Any) -> Seat:
        """The seat behind a client connection, by its peer address as the kernel gave it."""
        # A method, not a property: mitmproxy's command collector getattr()s every attribute at load.
        document = self.policy_file.document if self.policy_file is not None else None
        peer = client.peername[0] if client.peername else ""
        return seat_of(
            document, peer, ctx.options.invigil_intercept, ctx.options.invigil_exam_title, self.agent_api
        )

    # ------------------------------------------------------------------------------- the appliance rule

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses ``host`` resolves to, in resolver order ([] when it does not resolve)."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return []
        addresses: list[str] = []
        for family, _, _, _, sockaddr in infos:
            address = str(sockaddr[0])
            if family == socket.AF_INET6 and len(sockaddr) == 4 and sockaddr[3]:  # link-local: its zone
                address = f"{address}%{sockaddr[3]}"
            if address not in addresses:
                addresses.append(address)
        return addresses

    async def destination(self, host: str, port: int, addresses: list[str]) -> Destination:
        """The appliance rule's decision for ``host``:``port`` resolved to ``addresses``."""
        api: list[Endpoint] = []
        if self.agent_api is not None:
            api_host, api_port = self.agent_api
            api = [(address, api_port) for address in await self.resolve(api_host, api_port)]
        return choose_address(host, port, addresses, api, is_own_address)

    async def appliance_refusal(self, host: str, port: int) -> Decision | None:
        """The appliance rule's refusal of ``host``:``port``, or None (also when the host does not resolve:
        the connection then fails on its own, and is checked again before it is opened)."""
        addresses = await self.resolve(host, port)
        if not addresses:
            return None
        destination = await self.destination(host, port, addresses)
        return destination.decision if destination.address is None else None

    # --------------------------------------------------------------------------------------- reporting

    def report(self, client: Any, host: str, decision: Decision, url: str | None = None) -> None:
        """Log one decision and queue it for the hall server."""
        peer = client.peername[0] if client.peername else "0.0.0.0"  # noqa: S104 - unknown peer, not a bind
        verb = "allowed" if decision.allowed else "blocked"
        log.info("%s %s %s%s: %s", verb, peer, host, f" {url}" if url else "", decision.reason)
        if self.sender is not None:
            try:
                self.sender.add(make_site_event(peer, host, decision.allowed, decision.reason, url))
            except ValueError as exc:
                log.warning("site event not queued: %s", exc)

    # ------------------------------------------------------------------------------------------- hooks

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        """On an explicit-proxy CONNECT: decide on the CONNECT host, then on the appliance rule.

        Blocked hosts get 403 unless we intercept, in which case the tunnel is opened (no upstream
        connection: ``connection_strategy=lazy``) so each request gets the HTML block page."""
        if flow.response or flow.error or not flow.live:
            return
        host, port = flow.request.host, flow.request.port
        seat = self.seat(flow.client_conn)
        decision = seat.policy.decide_host(host, port)
        if decision.allowed:  # a blocked host is never resolved
            decision = await self.appliance_refusal(host, port) or decision
            self.tunnels[flow.client_conn.id] = flow.server_conn.id
        self.report(flow.client_conn, canonical_or_raw(host), decision)
        if not decision.allowed and not seat.intercept:
            what = "Blocked by the exam's network policy" if seat.enrolled else "Blocked"
            flow.response = http.Response.make(
                403,
                f"{what}: {decision.reason}\n",
                {"Content-Type": "text/plain; charset=utf-8"},
            )

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        """When a client's TLS ClientHello has arrived, before any upstream TLS.

        The SNI name must be allowed and (regular mode) be the CONNECT host. A seat whose exam is not
        intercepted has its allowed connection passed through untouched (``ignore_connection``); a refused
        one is closed (see ``server_connect``).
        """
        client = data.context.client
        address = data.context.server.address
        transparent = _mode_name(client) == "transparent"
        connect_host = None if transparent or address is None else address[0]
        destination = address[0] if transparent and address else None
        sni = data.client_hello.sni
        seat = self.seat(client)
        host, decision = decide_tls(seat.policy, sni, connect_host, destination)
        mismatch = connect_host is not None and sni is not None and host != canonical_or_raw(connect_host)
        if transparent or not decision.allowed:
            self.report(client, host, decision)
        if transparent and sni and decision.allowed and address:
            # Connect to the name the client asked for, not to whatever address it sent the packets to.
            data.context.server.address = (sni, address[1])
        if seat.intercept and not mismatch:
            return  # intercept: requests are decided one by one, blocked ones get the block page
        if decision.allowed:
            data.ignore_connection = True
            self.tunnels[client.id] = data.context.server.id
            return
        # Refuse: pass the bytes to nowhere. The upstream connection is vetoed in server_connect, so the
        # client sees its connection closed without a ServerHello.
        self.refused.add(client.id)
        data.ignore_connection = True

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Before mitmproxy opens any upstream connection: veto refused clients, then apply the appliance
        rule to the addresses the host resolves to now. A tunnel, and the agent API, are pinned to the
        address checked; HTTP connections keep their name, so that mitmproxy can reuse them."""
        if data.client.id in self.refused:
            data.server.error = "refused by the exam's network policy"
            return
        if data.server.address is None or data.server.via is not None:
            return
        host, port = data.server.address
        addresses = await self.resolve(host, port)
        if not addresses:
            data.server.error = f"cannot resolve {host}"
            return
        destination = await self.destination(host, port, addresses)
        if destination.address is None:
            data.server.error = destination.decision.reason
            self.report(data.client, canonical_or_raw(host), destination.decision)
            return
        if destination.agent_api or self.tunnels.get(data.client.id) == data.server.id:
            data.server.address = (destination.address, port)

    def client_disconnected(self, client: Any) -> None:
        """When a client connection closes: forget it."""
        self.refused.discard(client.id)
        self.tunnels.pop(client.id, None)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        """For each HTTP request (plain HTTP; HTTPS only when intercepting), before the body is read:
        decide the URL and the appliance rule, answer a blocked one with the block page."""
        if flow.response or flow.error or not flow.live:
            return
        request = flow.request
        host_header = request.host_header
        if _mode_name(flow.client_conn) == "transparent" and host_header and request.scheme == "http":
            # No CONNECT: the Host header names the site; fetch from that name, not the packet's address.
            with contextlib.suppress(ValueError):  # decide_request refuses a bad header
                request.host = host_of_header(host_header)
        seat = self.seat(flow.client_conn)
        host, decision = decide_request(seat.policy, request.url, request.host, host_header)
        if decision.allowed:
            decision = await self.appliance_refusal(request.host, request.port) or decision
        self.report(flow.client_conn, host, decision, request.url)
        if not decision.allowed:
            flow.response = http.Response.make(
                403,
                block_page(seat.exam_title, request.pretty_url, decision.reason, seat.enrolled),
                {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"},
            )

    def udp_start(self, flow: udp.UDPFlow) -> None:
        """For a new UDP flow (QUIC/HTTP3 would be one): never proxied."""
        host = flow.server_conn.address[0] if flow.server_conn.address else ""
        self.report(flow.client_conn, host, Decision(False, "UDP/QUIC is not allowed through the proxy"))
        flow.kill()


addons = [InvigilPolicy()]
