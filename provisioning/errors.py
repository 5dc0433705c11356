"""What provisioning refuses, as classes that carry a code; ``provisioning.cli`` renders them in one place."""

from __future__ import annotations


class ProvisioningError(Exception):
    """A request the organiser has to change; the message says what to do next."""

    code = "invalid"


class NotFound(ProvisioningError):
    code = "not_found"


class Conflict(ProvisioningError):
    """Something by that name exists with other attributes."""

    code = "conflict"


class LineErrors(ProvisioningError):
    """An input file has bad lines; ``errors`` lists every one as ``(line_number, what_to_fix)``."""

    code = "bad_lines"

    def __init__(self, source: str, errors: list[tuple[int, str]]) -> None:
        self.source = source
        self.errors = list(errors)
        lines = "\n".join(f"  {source}:{line}: {message}" for line, message in self.errors)
        super().__init__(f"{source} has {len(self.errors)} bad line(s); nothing was changed:\n{lines}")
