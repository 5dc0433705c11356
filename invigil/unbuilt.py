"""A plain message for console scripts whose part is not built yet, instead of an ImportError trace."""

from __future__ import annotations

import sys


def refuse(command: str, what: str) -> int:
    print(f"{command}: {what} is not part of this release yet; see the README for what is.", file=sys.stderr)
    return 2
