"""Every setting of the hall server, declared once: name, default, help.

This table feeds config loading (defaults, then ``INVIGIL_<NAME>`` environment variables, then the test
config), ``invigil-server settings`` and docs/settings.md; tests/hall_server/test_settings.py fails when a
setting is undocumented.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: A seat is in a capture gap after this many capture intervals of its exam without a capture record: the
#: default of ``capture_gap_s``, and the reviewer's timeline draws "no data" by the same measure.
GAP_INTERVALS = 3


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str

    @property
    def env_var(self) -> str:
        return f"INVIGIL_{self.name.upper()}"

    def parse(self, text: str) -> Any:
        """Turn an environment string into the type of the default."""
        if isinstance(self.default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{self.env_var} must be true or false, not {text!r}")
        if isinstance(self.default, int):
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"{self.env_var} must be a whole number, not {text!r}") from None
        if isinstance(self.default, float):
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{self.env_var} must be a number, not {text!r}") from None
        return text


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "data_dir",
        "./invigil-data",
        "Directory holding the database, the blob store and the hall master key.",
    ),
    Setting(
        "capture_max_bytes",
        8 * 1024 * 1024,
        "Largest capture body accepted, in bytes; larger uploads get HTTP 413.",
    ),
    Setting("thumbnail_max_bytes", 256 * 1024, "Largest thumbnail body accepted, in bytes."),
    Setting(
        "capture_max_pixels",
        40_000_000,
        "Largest width x height of one capture; bigger images are refused as possible image bombs.",
    ),
    Setting("json_max_bytes", 256 * 1024, "Largest JSON request body accepted, in bytes."),
    Setting(
        "clock_skew_max_s",
        30,
        "An agent clock further than this from the server's raises a clock_skew observation.",
    ),
    Setting(
        "session_grace_s",
        3600,
        "How long after the exam's end (plus the student's extra time) a session token still works, "
        "so an agent can drain its spool.",
    ),
    Setting("enrol_early_s", 1800, "How long before the exam's start students may enrol."),
    Setting(
        "sqlite_synchronous",
        "FULL",
        "SQLite synchronous mode: FULL (a committed row survives power loss) or NORMAL (survives a "
        "process crash; the last commits may roll back on power loss). See docs/durability.md.",
    ),
    Setting(
        "service_token_file",
        "",
        "File holding the token the proxy and sentinel present to the site-event endpoint; empty means "
        "<data_dir>/service.token, created on first start. Every caller sends it, on loopback too.",
    ),
    Setting(
        "site_capture_min_s",
        10.0,
        "When a seat reaches a host it never reached in its session, its agent is asked for a capture "
        "now; at most one such capture per seat in this many seconds (0: never ask).",
    ),
    Setting(
        "health_busy_queue",
        16,
        "Writers of one server process waiting for the store's write lock at which the health value agents "
        "get falls to 0 (they back off fully); it falls from 10 on the way.",
    ),
    Setting(
        "health_busy_latency_ms",
        400.0,
        "Mean acknowledgement time of the agent API over the last 2 s at which the health value falls to 0.",
    ),
    Setting(
        "overload_queue",
        48,
        "Writers waiting at which the agent API refuses requests with 503 and Retry-After, before reading "
        "their body (0 never refuses for the queue).",
    ),
    Setting(
        "overload_latency_ms",
        2000.0,
        "Mean acknowledgement time over the last 2 s at which the agent API refuses with 503 (0: never).",
    ),
    Setting(
        "overload_retry_after_s",
        5,
        "The Retry-After of a 503 (seconds); agents wait that long, with jitter, before they try again.",
    ),
    Setting(
        "trust_proxy_headers",
        False,
        "Take the client address from X-Forwarded-For (only behind a reverse proxy you run).",
    ),
    Setting(
        "process_role",
        "all",
        "What this server process does: all (agent API, dashboard and Socket.IO in one process), ingest "
        "(agent API only; live events go out through message_queue) or live (dashboard and Socket.IO only). "
        "See docs/dashboard.md.",
    ),
    Setting(
        "message_queue",
        "",
        "Socket.IO message queue URL (e.g. redis://:PASSWORD@127.0.0.1:6379/0, a Redis with requirepass) "
        "through which ingest workers in other processes emit live events; empty means the embedded "
        "single-process bus.",
    ),
    Setting(
        "live_emit_interval_s",
        0.25,
        "How often the live bus sends each hall's coalesced seat and observation events, in seconds "
        "(stale/offline states are recomputed about once a second).",
    ),
    Setting(
        "seat_stale_intervals",
        2,
        "A seat turns stale when no heartbeat came for this many capture intervals.",
    ),
    Setting(
        "seat_offline_s",
        60,
        "A seat turns offline when no heartbeat came for this many seconds (and at least the stale time).",
    ),
    Setting(
        "capture_gap_s",
        0,
        "A seat that is enrolled and has not left raises a capture_gap observation when no capture record "
        "(whole screen, tile update or unchanged record) came for this many seconds; heartbeats do not "
        f"count. 0 means {GAP_INTERVALS} capture intervals of its exam.",
    ),
    Setting(
        "capture_gap_sweep_s",
        5.0,
        "How often the process serving the dashboard looks for seats in a capture gap, in seconds.",
    ),
    Setting(
        "secret_key_file",
        "",
        "File holding the key that signs staff session cookies; empty means <data_dir>/secret.key, created "
        "(0600) on first start.",
    ),
    Setting(
        "cookie_secure",
        False,
        "Mark the staff session cookie Secure (set by `invigil-server serve` when it serves TLS).",
    ),
    Setting(
        "staff_session_hours",
        12,
        "How long a staff login lasts before the dashboard asks for the password again.",
    ),
    Setting(
        "login_max_failures",
        5,
        "Failed logins of one account (from anywhere) before its next login waits; each further failure "
        "doubles the wait. Counted in the store: a restart forgets nothing.",
    ),
    Setting(
        "login_max_failures_per_address",
        50,
        "Failed logins from one client address, whatever the usernames, before logins from it wait (slows "
        "spraying passwords across accounts).",
    ),
    Setting("login_lockout_s", 30, "The first wait after login_max_failures failures, in seconds."),
    Setting(
        "invigilator_access_after_h",
        12,
        "How long after an exam's end its invigilators and organisers may still open its live hall view "
        "(it opens enrol_early_s before the start).",
    ),
    Setting(
        "socket_recheck_s",
        2.0,
        "How often the dashboard checks each open live-view connection's login and assignment; an ended "
        "login or a removed assignment closes it.",
    ),
    Setting(
        "thumbnail_cache_s",
        3600,
        "Cache-Control max-age of a thumbnail or capture fetched by the dashboard (content never changes "
        "under its id).",
    ),
    Setting(
        "policy_publish_interval_s",
        10,
        "How often the server writes the running exams' network policies and the map from laptop address to "
        "exam to <data_dir>/proxy/hall-policy.json, where the proxy picks them up without a restart; 0 turns "
        "publishing off.",
    ),
    Setting(
        "hall_name",
        "",
        "The hall this appliance serves (the Debian package's /etc/invigil/invigil.conf sets it): only its "
        "exams' policies reach the proxy. Empty: the exams of every hall in the database.",
    ),
    Setting(
        "mdns_addresses",
        "",
        "Comma-separated addresses of the hall interface on which the server advertises _invigil._tcp and "
        "browses for agents over mDNS; empty means the addresses of hall_interface when mdns is on.",
    ),
    Setting(
        "hall_interface",
        "",
        "The interface facing the laptops (the Debian package's /etc/invigil/invigil.conf sets it); with "
        "mdns "
        "on, discovery runs on its addresses. A missing interface leaves discovery off with a log line.",
    ),
    Setting(
        "mdns",
        False,
        "Advertise the hall and browse for agents over mDNS on hall_interface (mdns_addresses, when set, "
        "names the addresses instead). Off: the roster still works from enrolment alone.",
    ),
    Setting(
        "proxy_port",
        0,
        "Port of the allowlist proxy on this appliance, named in /proxy.pac (explicit proxy mode; the Debian "
        "package's INVIGIL_PROXY_PORT). 0: no /proxy.pac.",
    ),
    Setting(
        "log_format",
        "text",
        "text: classic log lines; json: one JSON object per line with time, level, logger, event and, where "
        "known, exam, seat and request_id (the Debian package's server unit sets json).",
    ),
    Setting(
        "metrics_token_file",
        "",
        "File holding the token a Prometheus scraper sends as 'Authorization: Bearer <token>' for /metrics "
        "from another machine; empty means /metrics answers loopback only.",
    ),
)

SETTINGS_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults, then ``INVIGIL_*`` variables, then ``overrides`` (the test config or CLI flags).

    Unknown override keys raise ``KeyError`` so a typo
    in a test config never silently falls back to a default.
    """
    environ = os.environ if environ is None else environ
    values = {setting.name: setting.default for setting in SETTINGS}
    for setting in SETTINGS:
        if setting.env_var in environ:
            values[setting.name] = setting.parse(environ[setting.env_var])
    for key, value in (overrides or {}).items():
        if key not in SETTINGS_BY_NAME:
            raise KeyError(f"unknown setting {key!r}; known: {', '.join(sorted(SETTINGS_BY_NAME))}")
        values[key] = value
    if values["process_role"] not in ("all", "ingest", "live"):
        raise ValueError("process_role must be all, ingest or live")
    if str(values["sqlite_synchronous"]).upper() not in ("FULL", "NORMAL", "EXTRA"):
        raise ValueError("sqlite_synchronous must be FULL, NORMAL or EXTRA")
    if values["capture_gap_s"] < 0:
        raise ValueError(f"INVIGIL_CAPTURE_GAP_S must be 0 or more seconds, not {values['capture_gap_s']!r}")
    if values["capture_gap_sweep_s"] <= 0:
        raise ValueError(
            f"INVIGIL_CAPTURE_GAP_SWEEP_S must be more than 0 seconds, not {values['capture_gap_sweep_s']!r}"
        )
    if values["log_format"] not in ("text", "json"):
        raise ValueError(f"INVIGIL_LOG_FORMAT must be text or json, not {values['log_format']!r}")
    if values["mdns"] and not values["mdns_addresses"] and not values["hall_interface"]:
        raise ValueError(
            "INVIGIL_MDNS is on but INVIGIL_HALL_INTERFACE is empty: write INVIGIL_HALL_INTERFACE=<the "
            "interface facing the laptops> or INVIGIL_MDNS=off"
        )
    return values


def settings_markdown() -> str:
    """The settings table for docs/settings.md (``invigil-server settings --markdown``)."""
    lines = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for setting in SETTINGS:
        default = setting.default if setting.default != "" else "(empty)"
        lines.append(f"| `{setting.name}` | `{setting.env_var}` | `{default}` | {setting.help} |")
    return "\n".join(lines) + "\n"
