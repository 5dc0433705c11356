"""The words staff read for the observation kinds of the wire contract (``invigil.protocol``).

One mapping for every page: the reviewer's pages show the labels as they are, the live hall (which reads
them from its page's ``data-labels``) starts a line with them and capitalises the first letter. The labels
are lazy: each reads in the language of the request that shows it (``dashboard.i18n``).
"""

from __future__ import annotations

from collections.abc import Mapping

from flask_babel import lazy_gettext as _l

#: A label for every kind in ``invigil.protocol.OBSERVATION_KINDS`` (a test checks), lower case.
OBSERVATION_LABELS = {
    "blocked_site": _l("blocked site"),
    "bypass_site": _l("site around the proxy"),
    "capture_gap": _l("gap in captures"),
    "second_monitor": _l("second monitor"),
    "vpn_interface": _l("VPN interface"),
    "second_network_path": _l("second network path"),
    "remote_tool": _l("remote/VM tool"),
    "left_early": _l("left early"),
    "clock_skew": _l("clock skew"),
    "help_request": _l("help request"),
}


def observation_label(kind: str) -> str:
    """The label of ``kind``; a kind without one (an observation stored by a newer server) shows as itself."""
    return str(OBSERVATION_LABELS.get(kind, kind))


def in_language(labels: Mapping[str, object]) -> dict[str, str]:
    """``labels`` as plain strings in this request's language: what a page hands its script as JSON."""
    return {kind: str(label) for kind, label in labels.items()}
