"""What every ``invigil-provision`` command shares: the data directory, the store, output and errors."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click
import sqlite_utils

from hall_server.store import crypto, db, users
from provisioning.errors import LineErrors, ProvisioningError
from provisioning.tablefile import decode_text, read_file

APPLIANCE_DATA_DIR = "/var/lib/invigil"


class CommandFailed(click.ClickException):
    """A refused command: a message on stderr, or with ``--json`` an ``{"error": ...}`` object on stdout."""

    def __init__(self, message: str, code: str, lines: list[tuple[int, str]], as_json: bool) -> None:
        super().__init__(message)
        self.code, self.lines, self.as_json = code, lines, as_json

    def show(self, file: Any = None) -> None:
        if not self.as_json:
            super().show(file)
            return
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.lines:
            error["lines"] = [{"line": line, "message": message} for line, message in self.lines]
        click.echo(json.dumps({"error": error}, indent=2))


def render_failure(exc: Exception, as_json: bool) -> NoReturn:
    """The one place where domain errors become CLI errors, for every command."""
    if isinstance(exc, LineErrors):
        raise CommandFailed(str(exc), exc.code, exc.errors, as_json) from exc
    if isinstance(exc, ProvisioningError):
        raise CommandFailed(str(exc), exc.code, [], as_json) from exc
    if isinstance(exc, users.UnknownUser):
        raise CommandFailed(str(exc), "not_found", [], as_json) from exc
    if isinstance(exc, crypto.KeyUnavailable):
        raise CommandFailed(str(exc), "key_unavailable", [], as_json) from exc
    raise CommandFailed(str(exc), "invalid", [], as_json) from exc


@dataclass
class Session:
    """``ctx.obj`` of every command: the global options, and the store opened on demand."""

    data_dir_option: Path | None
    as_json: bool

    @property
    def data_dir(self) -> Path:
        if self.data_dir_option is None:
            raise click.UsageError(
                f"give --data-dir DIR or set INVIGIL_DATA_DIR (on the appliance: {APPLIANCE_DATA_DIR})"
            )
        data_dir = self.data_dir_option.resolve()
        _refuse_foreign_owner(data_dir)
        return data_dir

    @contextmanager
    def store(self) -> Iterator[sqlite_utils.Database]:
        """The migrated store; files made here belong to whoever runs the command (see docs/appliance.md)."""
        db.migrate(self.data_dir)
        store = db.connect(self.data_dir)
        try:
            yield store
        finally:
            store.close()

    def master_key(self) -> bytes:
        return crypto.load_or_create_master_key(self.data_dir)

    def emit(self, data: Any, text: str | list[str]) -> None:
        """Print ``data`` as JSON with ``--json``, else the human ``text``."""
        if self.as_json:
            click.echo(json.dumps(data, indent=2, default=str))
        else:
            click.echo(text if isinstance(text, str) else "\n".join(text))

    def note(self, message: str) -> None:
        """A remark for the person at the terminal: stderr, so ``--json`` output stays parseable."""
        click.echo(message, err=True)


def _refuse_foreign_owner(data_dir: Path) -> None:
    # root writing into the service user's directory leaves root-owned files (invigil.db-wal, keys) that
    # the hall server, running as `invigil`, cannot open: the server then fails at the start of the exam.
    if os.geteuid() != 0 or not data_dir.exists():
        return
    owner = data_dir.stat().st_uid
    if owner != 0:
        raise click.ClickException(
            f"{data_dir} belongs to uid {owner}, and you are root; run provisioning as its owner, "
            f"e.g. `sudo -u invigil invigil-provision ...`"
        )


def table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    """Left-aligned text columns for the human output of the ``list`` commands."""
    if not rows:
        return ["(none)"]
    cells = [[str("" if row[name] is None else row[name]) for name in columns] for row in rows]
    widths = [max(len(name), *(len(cell[i]) for cell in cells)) for i, name in enumerate(columns)]
    lines = ["  ".join(name.ljust(width) for name, width in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip() for cell in cells]
    return lines


def read_text(path: Path, what: str) -> str:
    return decode_text(read_file(path, what), str(path), what)
