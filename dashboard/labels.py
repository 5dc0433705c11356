"""The words staff read for the observation kinds of the wire contract (``invigil.protocol``).

One mapping for every page: the reviewer's pages show the labels as they are, the live hall (which reads
them from its page's ``data-labels``) starts a line with them and capitalises the first letter.
"""

from __future__ import annotations

#: A label for every kind in ``invigil.protocol.OBSERVATION_KINDS`` (a test checks), lower case.
OBSERVATION_LABELS: dict[str, str] = {
    "blocked_site": "blocked site",
    "bypass_site": "site around the proxy",
    "capture_gap": "gap in captures",
    "second_monitor": "second monitor",
    "vpn_interface": "VPN interface",
    "second_network_path": "second network path",
    "remote_tool": "remote/VM tool",
    "left_early": "left early",
    "clock_skew": "clock skew",
    "help_request": "help request",
}


def observation_label(kind: str) -> str:
    """The label of ``kind``; a kind without one (an observation stored by a newer server) shows as itself."""
    return OBSERVATION_LABELS.get(kind, kind)
