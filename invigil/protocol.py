"""Protocol version, endpoints, header names and vocabularies of the agent API.

Both sides import this module: the agent to build requests, the hall server to check them. A change to a
payload shape that an old agent cannot follow bumps ``PROTOCOL_VERSION``; the server then refuses the old
agent by name (HTTP 426) instead of misreading it.
"""

from __future__ import annotations

import re

PROTOCOL_VERSION = 1
API_PREFIX = "/api/v1"

#: Every agent request carries its protocol version in this header.
PROTOCOL_HEADER = "X-Invigil-Protocol"
#: Capture metadata travels as one ASCII-only JSON object in this header; the body is the raw image.
META_HEADER = "X-Invigil-Meta"

#: mDNS service types: the hall server advertises ``HALL_SERVICE``; agents announce ``AGENT_SERVICE``.
HALL_SERVICE = "_invigil._tcp.local."
AGENT_SERVICE = "_invigil-agent._tcp.local."
#: What an agent says about itself in its mDNS announcement.
AGENT_STATES = ("waiting", "enrolled", "capturing", "leaving")

#: Ids made by the agent (captures, events): URL-safe, no dots or slashes, so never a path.
#: ``ID_PATTERN`` is the OpenAPI document's spelling (ECMA-262, where ``$`` ends the string). In Python ``$``
#: also matches before a final newline, so ``ID_RE`` and ``SHA256_RE`` are anchored with ``\A`` and ``\Z``;
#: check with ``fullmatch``.
_ID_CHARS = r"[A-Za-z0-9_-]{8,64}"
ID_PATTERN = rf"^{_ID_CHARS}$"
ID_RE = re.compile(rf"\A{_ID_CHARS}\Z")
SHA256_RE = re.compile(r"\A[0-9a-f]{64}\Z")

IMAGE_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

#: Why a capture was taken.
CAPTURE_TRIGGERS = ("interval", "focus", "title", "start", "instruction", "monitors")

#: Device events the agent reports. Processes are reported only as categories, never as a list.
DEVICE_EVENT_KINDS = (
    "agent_started",  # detail: os, agent_version, display server
    "agent_stopped",
    "monitors",  # detail: count, geometry list
    "network_interface",  # detail: category ("vpn", "tunnel"), names; or a second path: category
    # ("tethering", "mobile", "second_path"), count, never names
    "process_category",  # detail: category, matched names
    "help_request",
    "help_cancel",
    "spool_dropped",  # detail: records dropped, bytes
    "capture_error",  # detail: reason (e.g. "wayland")
    "left",  # the student pressed "leave"
)

#: A second network path's categories (``network_interface`` events, sent with a count and no names).
SECOND_PATH_CATEGORIES = ("tethering", "mobile", "second_path")

PROCESS_CATEGORIES = ("remote_access", "screen_sharing", "virtual_machine", "vpn", "messaging")

#: What the network policy decided for a site event.
SITE_DECISIONS = ("allowed", "blocked")
SITE_SOURCES = ("proxy", "sentinel", "dns")

#: Observations the rules raise. They are signals for people, never verdicts. Staff read each under its
#: label in ``dashboard.labels`` (a test fails when one has none).
OBSERVATION_KINDS = (
    "blocked_site",
    "bypass_site",
    "capture_gap",
    "second_monitor",
    "vpn_interface",
    "second_network_path",
    "remote_tool",
    "left_early",
    "clock_skew",
    "help_request",
)

#: Instructions a heartbeat answer may carry to the agent.
INSTRUCTION_KINDS = ("capture_now", "end_exam")

#: Health 10 is an idle server; 0 asks every agent to hold off as long as it can.
HEALTH_MAX = 10

# Bounds shared by both sides.
MAX_MONITORS = 16
MAX_TITLE_CHARS = 512
MAX_APP_CHARS = 128
MAX_EVENTS_PER_BATCH = 200
MAX_DETAIL_BYTES = 4096


class ProtocolError(ValueError):
    """A payload does not follow this contract; ``code`` is a stable machine-readable name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
