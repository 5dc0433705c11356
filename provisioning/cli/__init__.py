"""``invigil-provision``: the organiser's CLI. Thin: parse, call the provisioning library, echo.

Domain errors become ``click.ClickException`` in one place (``RootGroup.invoke``); ``--json`` makes every
command print one JSON document on stdout (and errors as ``{"error": {"code", "message", "lines"}}``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hall_server.store.crypto import KeyUnavailable
from hall_server.store.exams import BadText
from hall_server.store.users import UserError
from provisioning.cli.context import Session, render_failure
from provisioning.cli.exam import exam, joincode, roster
from provisioning.cli.hall import hall
from provisioning.cli.tls import bundle, certs
from provisioning.cli.user import assignment, user
from provisioning.errors import ProvisioningError


class RootGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ProvisioningError, UserError, KeyUnavailable, BadText) as exc:
            session = ctx.obj if isinstance(ctx.obj, Session) else None
            render_failure(exc, session.as_json if session else False)


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="INVIGIL_DATA_DIR",
    help="The hall server's data directory (appliance: /var/lib/invigil). Env: INVIGIL_DATA_DIR.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (for scripts).")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, as_json: bool) -> None:
    """Provision an Invigil hall: halls, exams, rosters, staff, certificates, join codes, agent bundles.

    \b
    Example:
      export INVIGIL_DATA_DIR=/var/lib/invigil
      invigil-provision hall create "Hall A" --interface enp3s0 --seat-map seats.csv
    """
    ctx.obj = Session(data_dir, as_json)


for command in (hall, exam, roster, user, assignment, certs, joincode, bundle):
    main.add_command(command)
