"""Rules that turn device and site events, agents' clocks and their silence into observations: signals for
people, never verdicts.

Pure functions, run inside the transaction that stores the event, so an event and the observation it raises
are committed together (a capture gap, raised by no event, is decided by the sweep of
``hall_server.ingest.gaps``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hall_server.settings import GAP_INTERVALS
from invigil.payloads import DeviceEvent, SiteEvent
from invigil.protocol import SECOND_PATH_CATEGORIES
from invigil.timeutil import to_wire

Observation = tuple[str, dict[str, Any]]

REMOTE_TOOL_CATEGORIES = ("remote_access", "screen_sharing", "virtual_machine")


def observations_for_device_event(
    event: DeviceEvent, exam_end: datetime, received_at: datetime | None = None
) -> list[Observation]:
    """``exam_end`` is the student's own end (exam end plus extra time). A leave counts from the earlier of
    the agent's time and ``received_at`` (when the server got it): a clock set late cannot hide an early
    leave."""
    detail = event.detail
    if detail.get("state") == "ended":  # the agent reports that a VPN or tool went away: nothing to flag
        return []
    if event.kind == "monitors":
        count = detail.get("count")
        if isinstance(count, int) and count > 1:
            return [("second_monitor", {"count": count})]
    elif event.kind == "network_interface":
        if detail.get("category") in ("vpn", "tunnel"):
            return [("vpn_interface", {"names": detail.get("names", [])})]
        if detail.get("category") in SECOND_PATH_CATEGORIES:
            return [("second_network_path", {"category": detail["category"]})]
    elif event.kind == "process_category":
        category = detail.get("category")
        if category in REMOTE_TOOL_CATEGORIES:
            return [("remote_tool", {"category": category, "names": detail.get("names", [])})]
    elif event.kind == "help_request":
        return [("help_request", {})]
    elif event.kind == "left":
        left_at = min(event.agent_time, received_at) if received_at is not None else event.agent_time
        if left_at < exam_end:
            return [("left_early", {"minutes_early": int((exam_end - left_at).total_seconds() // 60)})]
    return []


def observations_for_site_event(event: SiteEvent) -> list[Observation]:
    if event.source == "sentinel":
        # The sentinel only reports what it saw go around the proxy.
        return [("bypass_site", {"host": event.host, "reason": event.reason})]
    if event.decision == "blocked":
        return [("blocked_site", {"host": event.host, "url": event.url, "reason": event.reason})]
    return []


def clock_skew(agent_time: datetime, server_time: datetime, max_skew_s: float) -> Observation | None:
    """For what the agent sends as it happens (enrolment, heartbeat): its time against the server's."""
    skew = (agent_time - server_time).total_seconds()
    if abs(skew) > max_skew_s:
        return ("clock_skew", {"skew_s": round(skew, 1)})
    return None


def record_clock_skew(
    agent_time: datetime, received_at: datetime, first_enrolled_at: datetime, max_skew_s: float
) -> Observation | None:
    """For a record the agent dated (a capture, an unchanged record, a device event): it cannot have been
    made after it arrived, nor before the student's agent first enrolled in the exam. A record dated in
    between is no skew, however late it came: a spool drains what it kept while the network was down.
    ``skew_s`` is how far outside that window the record's time lies (negative: too early)."""
    ahead = (agent_time - received_at).total_seconds()
    if ahead > max_skew_s:
        return ("clock_skew", {"skew_s": round(ahead, 1), "dated": "ahead_of_receipt"})
    before = (agent_time - first_enrolled_at).total_seconds()
    if before < -max_skew_s:
        return ("clock_skew", {"skew_s": round(before, 1), "dated": "before_enrolment"})
    return None


def capture_gap_s(setting_s: float, capture_interval_s: int) -> float:
    """How long a seat may send no capture record: the ``capture_gap_s`` setting, or when it is 0,
    ``GAP_INTERVALS`` capture intervals of the exam."""
    return float(setting_s) if setting_s > 0 else float(GAP_INTERVALS * capture_interval_s)


def capture_gap(
    *, since: datetime, now: datetime, gap_s: float, left: bool, ends_at: datetime
) -> Observation | None:
    """A ``capture_gap`` when a seat sent no capture record for longer than ``gap_s``.

    ``since`` is when the server received the seat's last capture record, or its enrolment when it sent
    none; heartbeats do not count (an agent whose capture stopped still beats). ``ends_at`` is the end of
    the exam for this student (exam end plus extra time, or when the invigilator ended it): a session
    that ``left`` or whose exam is over has no gap to raise."""
    if left or now >= ends_at:
        return None
    if (now - since).total_seconds() <= gap_s:
        return None
    return ("capture_gap", {"since": to_wire(since)})


def closed_gap(detail: dict[str, Any], since: datetime, until: datetime, resumed: bool) -> dict[str, Any]:
    """The detail of a capture gap that ended at ``until``: with data again (``resumed``), or because the
    session left or its exam ended."""
    seconds = max(0, round((until - since).total_seconds()))
    return {**detail, "until": to_wire(until), "seconds": seconds, "resumed": resumed}
