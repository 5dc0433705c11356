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


class SheetErrors(LineErrors):
    """A spreadsheet has bad cells; each of ``errors`` is ``(row, "Sheet1 row 7 column B (name): ...")``."""

    def __init__(self, source: str, errors: list[tuple[int, str]]) -> None:
        self.source = source
        self.errors = list(errors)
        lines = "\n".join(f"  {message}" for _row, message in self.errors)
        ProvisioningError.__init__(
            self, f"{source} has {len(self.errors)} bad cell(s); nothing was changed:\n{lines}"
        )
