"""Device checks: categories and matched names only, reported when something changed."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from itertools import count

import pytest

from agent.devices import (
    CategoriesError,
    DeviceChecker,
    load_categories,
    match_interfaces,
    match_processes,
    parse_categories,
    psutil_interfaces,
    psutil_process_names,
)
from invigil import payloads
from invigil import protocol as p

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CATEGORIES = load_categories()


@pytest.mark.parametrize(
    "name, category",
    [
        ("AnyDesk.exe", "remote_access"),
        ("TeamViewer", "remote_access"),
        ("rustdesk", "remote_access"),
        ("x11vnc", "remote_access"),
        ("vncserver-x11", "remote_access"),
        ("remoting_host.exe", "remote_access"),
        ("zoom.us", "screen_sharing"),
        ("ms-teams", "screen_sharing"),
        ("Discord", "screen_sharing"),
        ("obs64.exe", "screen_sharing"),
        ("VirtualBoxVM", "virtual_machine"),
        ("vmware-vmx", "virtual_machine"),
        ("qemu-system-x86_64", "virtual_machine"),
        ("prl_client_app", "virtual_machine"),
        ("openvpn", "vpn"),
        ("WhatsApp.exe", "messaging"),
        ("telegram-desktop", "messaging"),
        ("signal-desktop", "messaging"),
        ("slack", "messaging"),
    ],
)
def test_well_known_tools_fall_in_their_category(name, category):
    assert category in match_processes([name], CATEGORIES)


@pytest.mark.parametrize(
    "name", ["firefox", "python3", "bash", "code", "libreoffice", "systemd", "Xorg", "sshd"]
)
def test_ordinary_programs_match_nothing(name):
    assert match_processes([name], CATEGORIES) == {}


def test_only_categories_and_matched_names_leave_the_machine():
    names = ["firefox", "anydesk", "bash", "secret-diary-app", "TeamViewer", "telegram-desktop", "anydesk"]
    assert match_processes(names, CATEGORIES) == {
        "messaging": ("telegram-desktop",),
        "remote_access": ("anydesk", "teamviewer"),
    }


@pytest.mark.parametrize(
    "interfaces, expected",
    [
        ({"lo": True, "eth0": True, "wlan0": True}, {}),
        ({"tun0": True}, {"tunnel": ("tun0",)}),
        ({"tun0": False}, {}),  # down: not in use
        ({"wg0": True, "utun3": True}, {"tunnel": ("utun3",), "vpn": ("wg0",)}),
        ({"NordVPN Adapter": True, "ppp0": True}, {"tunnel": ("ppp0",), "vpn": ("NordVPN Adapter",)}),
        ({"ipsec0": True, "tailscale0": True}, {"vpn": ("ipsec0", "tailscale0")}),
    ],
)
def test_vpn_and_tunnel_interfaces(interfaces, expected):
    assert match_interfaces(interfaces) == expected


def test_checker_reports_changes_only():
    ids = count()
    monitors = [{"left": 0, "top": 0, "width": 1920, "height": 1080}]
    interfaces = {"lo": True, "eth0": True}
    processes = ["firefox"]
    checker = DeviceChecker(
        CATEGORIES,
        new_id=lambda: f"event-{next(ids):04d}",
        list_monitors=lambda: monitors,
        list_interfaces=lambda: interfaces,
        list_processes=lambda: processes,
    )
    first = checker.check(NOW)
    assert [(e.kind, e.detail) for e in first] == [
        ("monitors", {"count": 1, "geometry": [[0, 0, 1920, 1080]]})
    ]
    assert checker.check(NOW) == []
    monitors.append({"left": 1920, "top": 0, "width": 1280, "height": 1024})
    interfaces["wg0"] = True
    processes += ["AnyDesk.exe", "vmware-vmx"]
    changed = checker.check(NOW)
    assert [(e.kind, e.detail) for e in changed] == [
        ("monitors", {"count": 2, "geometry": [[0, 0, 1920, 1080], [1920, 0, 1280, 1024]]}),
        ("network_interface", {"category": "vpn", "names": ["wg0"], "state": "present"}),
        ("process_category", {"category": "remote_access", "names": ["anydesk"], "state": "present"}),
        ("process_category", {"category": "virtual_machine", "names": ["vmware-vmx"], "state": "present"}),
    ]
    processes.remove("AnyDesk.exe")
    ended = checker.check(NOW)
    assert [(e.kind, e.detail) for e in ended] == [
        (
            "process_category",
            {"category": "remote_access", "names": [], "state": "ended", "ended_names": ["anydesk"]},
        )
    ]
    for event in first + changed + ended:  # every event is one the server accepts
        payloads.parse_device_events({"events": [event.as_wire()]})


def test_a_new_monitor_layout_is_reported_once_by_the_check_before_each_capture():
    """The capture loop reports a new layout before it grabs the new screens (the server refuses a screen
    of a size no reported monitor has), and the interval's full check does not report it again."""
    monitors = [{"left": 0, "top": 0, "width": 1920, "height": 1080}]
    checker = DeviceChecker(
        CATEGORIES,
        new_id=lambda: "event-0001",
        list_monitors=lambda: monitors,
        list_interfaces=dict,
        list_processes=list,
    )
    assert [e.detail["count"] for e in checker.check_monitors(NOW)] == [1]
    assert checker.check_monitors(NOW) == []
    monitors.append({"left": 1920, "top": 0, "width": 2560, "height": 1440})
    assert [e.detail["geometry"] for e in checker.check_monitors(NOW)] == [
        [[0, 0, 1920, 1080], [1920, 0, 2560, 1440]]
    ]
    assert [e.kind for e in checker.check(NOW)] == []
    assert DeviceChecker(CATEGORIES, new_id=lambda: "event-0002").check_monitors(NOW) == []


def test_organisers_extend_the_categories_with_a_file(tmp_path):
    extra = tmp_path / "ours.json"
    extra.write_text(json.dumps({"categories": {"messaging": ["campus-chat*"]}}))
    merged = load_categories([extra])
    assert match_processes(["campus-chat-beta"], merged) == {"messaging": ("campus-chat-beta",)}
    assert "whatsapp*" in merged["messaging"]  # the shipped names stay


@pytest.mark.parametrize(
    "raw, problem",
    [
        ([], "expected"),
        ({"categories": {"games": ["steam"]}}, "unknown category 'games'"),
        ({"categories": {"messaging": "whatsapp"}}, "list of non-empty"),
        ({"categories": {"messaging": [""]}}, "list of non-empty"),
    ],
)
def test_a_bad_categories_file_is_refused_by_name(raw, problem):
    with pytest.raises(CategoriesError, match=problem):
        parse_categories(raw)


def test_the_shipped_file_uses_only_protocol_categories():
    assert set(CATEGORIES) == set(p.PROCESS_CATEGORIES)


def test_a_real_remote_access_process_is_found_by_psutil(tmp_path):
    """A program named like AnyDesk (a copy of ``sleep``) runs; the real psutil check reports only it."""
    sleep = shutil.which("sleep")
    assert sleep
    fake = tmp_path / "anydesk"
    shutil.copy(sleep, fake)
    proc = subprocess.Popen([str(fake), "30"])
    try:
        checker = DeviceChecker(CATEGORIES, new_id=lambda: "event-0001")
        events = [e for e in checker.check(NOW) if e.kind == "process_category"]
        remote = [e.detail for e in events if e.detail["category"] == "remote_access"]
        assert remote == [{"category": "remote_access", "names": ["anydesk"], "state": "present"}]
        assert "sleep" not in json.dumps([e.detail for e in events])
        assert "lo" in psutil_interfaces() and "anydesk" in psutil_process_names()
    finally:
        proc.kill()
        proc.wait()
