"""``invigil-provision``: the organiser's CLI (issue 7). Until it lands, halls and exams are created with
the store library ``hall_server.exams`` (see tests/conftest.py and scripts/demo.py)."""

from __future__ import annotations

import sys

from invigil.unbuilt import refuse


def main() -> None:
    sys.exit(refuse("invigil-provision", "the organiser's CLI"))
