"""``invigil-agent``: the student agent's command line (issue 3)."""

from __future__ import annotations

import sys

from invigil.unbuilt import refuse


def main() -> None:
    sys.exit(refuse("invigil-agent", "the student agent's command line"))
