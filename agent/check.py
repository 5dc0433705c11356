"""``invigil-agent check``: the practice run a student does days before the exam, with no hall.

It grabs every monitor through the real pipeline (the grabber and the 4-bit gray PNG the reviewer sees),
writes each picture where the student can open it, checks the screen permission (macOS Screen Recording,
the Wayland portal), the monitor count, the device categories that would raise observations, and the
agent's protocol against the hall bundle's; then it prints one verdict with what to fix. It sends nothing
anywhere: no hall, no network.

:func:`run_check` is pure over its injected sources (grabber, process and interface lists, permission), so
tests feed it recorded input; ``agent.cli`` passes the real ones.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.bundle import AgentBundle
from agent.devices import Categories, match_interfaces, match_processes
from agent.encode import encode_levels, quantise_gray4
from agent.grab import CaptureUnavailable, MonitorFrame
from agent.i18n import _
from invigil import protocol as p

#: A screen whose most common gray level covers this share of its pixels shows nothing: what a grab
#: without permission (macOS) or of a locked or switched-off display returns.
BLANK_SHARE = 0.995


def category_name(category: str) -> str:
    """What the student calls a category, in their language."""
    names = {
        "remote_access": _("remote-access tool"),
        "screen_sharing": _("screen-sharing tool"),
        "virtual_machine": _("virtual machine"),
        "vpn": _("VPN"),
        "messaging": _("messaging app"),
        "tunnel": _("network tunnel"),
        "tethering": _("phone tethering (USB or Bluetooth)"),
        "mobile": _("mobile broadband"),
        "second_path": _("second network connection"),
    }
    return names.get(category, category)


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``ok``, ``warn`` (raises an observation in the exam) or ``fail`` (cannot
    take the exam like this)."""

    level: str
    text: str
    fix: str = ""


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    pictures: list[Path] = field(default_factory=list)

    def add(self, level: str, text: str, fix: str = "") -> None:
        self.findings.append(Finding(level, text, fix))

    @property
    def ready(self) -> bool:
        return not any(finding.level == "fail" for finding in self.findings)

    def verdict(self) -> str:
        if not self.ready:
            return _("NOT READY: fix the problems marked [FAIL] and run the check again.")
        if any(finding.level == "warn" for finding in self.findings):
            return _(
                "READY, but the invigilators will see the points marked [WARN]: fix them before the exam."
            )
        return _("READY: this laptop can take the exam.")

    def lines(self) -> list[str]:
        marks = {"ok": "[ OK ]", "warn": "[WARN]", "fail": "[FAIL]"}
        out = []
        for finding in self.findings:
            out.append(f"{marks[finding.level]} {finding.text}")
            if finding.fix:
                out.append(f"       -> {finding.fix}")
        out.append("")
        out.append(self.verdict())
        return out


def is_blank(levels: np.ndarray, share: float = BLANK_SHARE) -> bool:
    """True when one gray level covers ``share`` of the screen: a grab that shows nothing."""
    if levels.size == 0:
        return True
    counts = np.bincount(levels.ravel(), minlength=16)
    return bool(counts.max() >= share * levels.size)


def frame_is_blank(frame: MonitorFrame, step: int = 8) -> bool:
    """:func:`is_blank` on every ``step``-th pixel of each ``step``-th row: cheap enough for every grab."""
    pixels = frame.bgrx[::step, ::step, 2::-1] if frame.bgrx is not None else frame.rgb[::step, ::step]
    return is_blank(quantise_gray4(np.ascontiguousarray(pixels)))


def run_check(
    *,
    grab_factory: Callable[[], Callable[[], list[MonitorFrame]]],
    out_dir: Path,
    display_server: str,  # "x11", "wayland", "windows", "macos", or "none" (the grab then says why)
    categories: Categories,
    agent_version: str,
    bundle: AgentBundle | None,
    list_processes: Callable[[], Iterable[str]],
    list_interfaces: Callable[[], Mapping[str, bool]],
    permission: Callable[[], Finding | None] = lambda: None,
    list_paths: Callable[[Mapping[str, bool], Collection[str]], dict[str, int]] = lambda _up, _skip: {},
) -> CheckReport:
    """Every check, in the order a student fixes things; writes ``screen-N.png`` into ``out_dir``."""
    report = CheckReport()
    if display_server != "none":
        report.add("ok", _("Screen capture: {server}").format(server=display_server))
    allowed = permission()
    if allowed is not None:
        report.findings.append(allowed)
    frames: list[MonitorFrame] = []
    try:
        grab = grab_factory()
        try:
            frames = grab()
        finally:
            close = getattr(grab, "close", None)
            if callable(close):
                close()
    except CaptureUnavailable as exc:
        report.add("fail", _("Invigil cannot capture your screens."), str(exc))
    if frames:
        out_dir.mkdir(parents=True, exist_ok=True)
    for number, frame in enumerate(frames, start=1):
        levels = quantise_gray4(frame.rgb)
        picture = out_dir / f"screen-{number}.png"
        picture.write_bytes(encode_levels(levels).data)
        report.pictures.append(picture)
        if is_blank(levels):
            report.add(
                "fail",
                _("Screen {n} ({w}x{h}) comes out blank.").format(n=number, w=frame.width, h=frame.height),
                _(
                    "Allow Invigil to record the screen (macOS: System Settings > Privacy & Security > "
                    "Screen Recording), unlock the screen, and run the check again."
                ),
            )
        else:
            report.add(
                "ok",
                _("Screen {n} ({w}x{h}): recorded as in {picture}").format(
                    n=number, w=frame.width, h=frame.height, picture=picture
                ),
            )
    if len(frames) > 1:
        report.add(
            "warn",
            _("{count} monitors: a second monitor is shown to the invigilators.").format(count=len(frames)),
            _("Unplug every monitor but the laptop's own before the exam, unless the hall allows it."),
        )
    up = list_interfaces()
    tunnels = match_interfaces(up)
    found = {**tunnels, **match_processes(list_processes(), categories)}
    for category, names in sorted(found.items()):
        report.add(
            "warn",
            _("{what} running: {names}").format(what=category_name(category), names=", ".join(names)),
            _("Quit it (or switch it off) before the exam: the invigilators are told it runs."),
        )
    if not found:
        report.add(
            "ok", _("No VPN, remote-access, screen-sharing, messaging or virtual-machine software running.")
        )
    paths = list_paths(up, {name for names in tunnels.values() for name in names})
    for category, count in paths.items():
        report.add(
            "warn",
            _("{what}: another way onto the internet next to the hall network ({count}).").format(
                what=category_name(category), count=count
            ),
            _(
                "Disconnect it before the exam (unplug the phone or the cable, switch mobile data off): "
                "the invigilators are told."
            ),
        )
    if not paths:
        report.add("ok", _("No second way onto the internet (phone tethering, mobile broadband)."))
    if bundle is None:
        report.add(
            "warn",
            _("Invigil {version} (protocol {protocol}); no hall bundle given.").format(
                version=agent_version, protocol=p.PROTOCOL_VERSION
            ),
            _("Run the check with --bundle and the file from your hall to check that this agent fits it."),
        )
    else:
        report.add(
            "ok",
            _("Invigil {version} speaks protocol {protocol}, as the bundle of {hall} asks.").format(
                version=agent_version, protocol=p.PROTOCOL_VERSION, hall=bundle.hall
            ),
        )
    return report
