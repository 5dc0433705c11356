"""py2app recipe for ``Invigil.app``, the agent for students' Macs (run by .github/workflows/agent-macos.yml
on a macOS runner; nothing here runs on Linux).

    python packaging/macos/setup_py2app.py py2app

The app's entry point is the same ``agent.cli.main`` as the ``invigil-agent`` command; ``Info.plist``
explains to the student why Invigil asks for Screen Recording (agent/macos_permission.py asks before the
student joins).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from setuptools import setup

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

setup(
    name="Invigil",
    app=[str(Path(__file__).with_name("invigil_app.py"))],
    version=VERSION,
    options={
        "py2app": {
            "packages": ["agent", "invigil", "mss", "psutil", "zeroconf", "numpy", "PIL", "Crypto"],
            "resources": [str(REPO / "agent" / "categories.json")],
            "plist": {
                "CFBundleName": "Invigil",
                "CFBundleDisplayName": "Invigil",
                "CFBundleIdentifier": "org.invigil.agent",
                "CFBundleShortVersionString": VERSION,
                "LSMinimumSystemVersion": "11.0",
                "NSHighResolutionCapable": True,
                # Shown by macOS next to the Screen Recording switch.
                "NSScreenCaptureUsageDescription": (
                    "Invigil shares your screens with the exam hall's invigilators while the exam runs, "
                    "and shows you what it records."
                ),
            },
        }
    },
)
