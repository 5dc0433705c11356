"""``invigil-proxy``: starts mitmdump with the Invigil addon from its own virtualenv (issue 5)."""

from __future__ import annotations

import sys

from invigil.unbuilt import refuse


def main() -> None:
    sys.exit(refuse("invigil-proxy", "the allowlist proxy"))
