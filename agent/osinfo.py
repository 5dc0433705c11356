"""What the agent tells the hall about the laptop's system, without asking Windows' WMI.

Python 3.13's ``platform`` module asks WMI first on Windows (``platform.system()``, ``release()``,
``uname()``; mss and ifaddr call them). Wine does not implement that query and the process aborts, and a
real Windows without a working WMI service hangs on it: :func:`without_wmi` makes ``platform`` use its other
sources (the registry and ``sys.getwindowsversion``), which it falls back to whenever WMI is missing.
"""

from __future__ import annotations

import os
import platform
import sys


def without_wmi() -> None:
    """Keep ``platform`` from querying WMI (a no-op off Windows and on Pythons without the ``_wmi`` module).

    Call before anything asks ``platform`` about the system: it caches its first answer.
    """
    if sys.platform == "win32" and getattr(platform, "_wmi", None) is not None:
        platform._wmi = None  # type: ignore[attr-defined]  # platform's own fallback when _wmi is missing


def os_description() -> str:
    """``"Windows 10.0.19045"``, ``"macOS 14.5"``, ``"Linux 6.1.0-18-amd64"``: at most 64 characters."""
    if sys.platform == "win32":
        version = sys.getwindowsversion()
        text = f"Windows {version.major}.{version.minor}.{version.build}"
    elif sys.platform == "darwin":
        text = f"macOS {platform.mac_ver()[0]}"
    else:
        uname = os.uname()
        text = f"{uname.sysname} {uname.release}"
    return text[:64]
