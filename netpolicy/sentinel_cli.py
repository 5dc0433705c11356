"""``invigil-sentinel``: the passive DNS / TLS SNI sentinel (issue 5)."""

from __future__ import annotations

import sys

from invigil.unbuilt import refuse


def main() -> None:
    sys.exit(refuse("invigil-sentinel", "the sentinel"))
