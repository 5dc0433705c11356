"""What the platform focus probes share: the :data:`Focus` pair, the guard around OS calls, name cleaning.

Stdlib only, and importing no platform module, so each platform module can build on it without
importing the package that chooses between them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

#: (focused application, window title); either may be None when the OS does not say.
Focus = tuple[str | None, str | None]
FocusProbe = Callable[[], Focus]

log = logging.getLogger(__name__)

#: Longest title or application name read from the OS; the wire format cuts further (invigil.protocol).
MAX_READ_CHARS = 2048


class FocusUnavailable(RuntimeError):
    """The platform's focus API cannot be loaded (no X display, no libX11, no user32/AppKit).

    :func:`agent.focus.system_probe` turns it into :func:`no_focus`: the agent then runs without focus
    information.
    """


def no_focus() -> Focus:
    """The probe where the OS offers nothing (Wayland, or a platform API that did not load)."""
    return (None, None)


class ClosableProbe(Protocol):
    """A platform probe: a :data:`FocusProbe` with a ``close`` that releases what it holds."""

    def __call__(self) -> Focus: ...

    def close(self) -> None: ...


def clean_name(raw: str | None) -> str | None:
    """A name as the OS gave it, made safe to send: cut, stripped, unpaired UTF-16 halves replaced.

    None when nothing is left.
    """
    if not raw:
        return None
    # GetWindowTextW cuts at a buffer length and can split a surrogate pair; a lone half cannot be
    # encoded as UTF-8, so it would fail later when the capture metadata is written.
    text = raw[:MAX_READ_CHARS].encode("utf-8", "replace").decode("utf-8").strip()
    return text or None


class GuardedProbe:
    """A probe that never raises: a failing OS call reports (None, None) and is logged once per probe.

    The runtime polls once a second, so a call that fails keeps failing; one warning says so. Subclasses
    implement :meth:`read`.
    """

    platform = "?"

    def __init__(self) -> None:
        self._failed_before = False

    def read(self) -> Focus:
        raise NotImplementedError

    def __call__(self) -> Focus:
        """The focused (application, title), or (None, None) if the OS call failed."""
        try:
            return self.read()
        except Exception:
            if not self._failed_before:
                log.warning("focus probe (%s) failed; captures carry no focus", self.platform, exc_info=True)
                self._failed_before = True
            return (None, None)

    def close(self) -> None:
        """Nothing to release: the libraries stay loaded for the life of the process."""
