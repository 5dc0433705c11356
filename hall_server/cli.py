"""``invigil-server``: run the hall server and look after its data directory. Thin: parse, call, echo."""

from __future__ import annotations

from pathlib import Path

import click

from hall_server import serve as serving
from hall_server.review.cli import register as register_review_commands
from hall_server.settings import SETTINGS, settings_markdown


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The Invigil hall server.

    Example: invigil-server serve --data-dir /var/lib/invigil --bind 0.0.0.0:8443
    """


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="INVIGIL_DATA_DIR",
    required=True,
    help="Database, blobs and the hall master key live here.",
)
@click.option("--bind", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to listen on.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Server certificate (PEM).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Its private key (PEM).")
@click.option("--workers", default=1, show_default=True, help="gunicorn worker processes.")
@click.option(
    "--worker-class",
    type=click.Choice(["gthread", "gevent", "sync"]),
    default="gthread",
    show_default=True,
    help="gunicorn worker type (docs/architecture.md says why gthread).",
)
@click.option("--threads", default=32, show_default=True, help="Threads per gthread worker.")
@click.option(
    "--role",
    type=click.Choice(["all", "ingest", "live"]),
    envvar="INVIGIL_PROCESS_ROLE",
    default="all",
    show_default=True,
    help="all: agent API + dashboard in one process; ingest: agent API only, live events through "
    "--message-queue; live: dashboard + Socket.IO only (one worker). See docs/dashboard.md.",
)
@click.option(
    "--message-queue",
    envvar="INVIGIL_MESSAGE_QUEUE",
    default="",
    help="Socket.IO message queue URL, e.g. redis://:PASSWORD@127.0.0.1:6379/0 (needed by --role ingest).",
)
@click.option("--access-log/--no-access-log", default=False, show_default=True)
def serve(
    data_dir: Path,
    bind: str,
    tls_cert: str | None,
    tls_key: str | None,
    workers: int,
    worker_class: str,
    threads: int,
    role: str,
    message_queue: str,
    access_log: bool,
) -> None:
    """Serve the agent API and the dashboard under gunicorn (or one of them, with --role).

    Example: invigil-server serve --data-dir ./invigil-data --bind 127.0.0.1:8080

    Example (Redis layout): invigil-server serve --role ingest --workers 2 --message-queue
    redis://:PASSWORD@127.0.0.1:6379/0 --bind 0.0.0.0:8443 ... and invigil-server serve --role live
    --message-queue redis://:PASSWORD@127.0.0.1:6379/0 --bind 127.0.0.1:8081
    """
    if role == "ingest" and not message_queue:
        raise click.UsageError("--role ingest needs --message-queue (the live process listens there)")
    if role == "live" and workers != 1:
        raise click.UsageError(
            "the dashboard's Socket.IO needs exactly one worker: run more with --role ingest"
        )
    if role == "all" and workers != 1:
        click.echo(
            "warning: with several workers the dashboard's live view is unreliable (Socket.IO needs one "
            "process): use --role ingest and --role live (docs/dashboard.md)",
            err=True,
        )
    data_dir = data_dir.resolve()
    log = serving.startup_log()
    applied = serving.prepare_data_dir(data_dir)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    try:
        options = serving.gunicorn_options(
            bind=bind,
            workers=workers,
            worker_class=worker_class,
            threads=threads,
            data_dir=data_dir,
            tls_cert=tls_cert,
            tls_key=tls_key,
            access_log=access_log,
            control_socket="gunicorn.ctl" if role == "all" else f"gunicorn-{role}.ctl",
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    scheme = "https" if tls_cert else "http"
    log.info("Invigil hall server on %s://%s (data: %s)", scheme, bind, data_dir)
    app_config = {
        "data_dir": str(data_dir),
        "process_role": role,
        "message_queue": message_queue,
        "cookie_secure": bool(tls_cert),
    }
    serving.run(options, app_config)


@main.command()
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="INVIGIL_DATA_DIR", required=True
)
def migrate(data_dir: Path) -> None:
    """Create or upgrade the store in DATA_DIR without serving.

    Example: invigil-server migrate --data-dir ./invigil-data
    """
    applied = serving.prepare_data_dir(data_dir)
    click.echo(f"applied: {', '.join(applied)}" if applied else "the store is up to date")


@main.command()
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="INVIGIL_DATA_DIR", required=True
)
def init(data_dir: Path) -> None:
    """Create the store, master key, service token and cookie key in DATA_DIR; keep those that exist.

    Example: runuser -u invigil -- invigil-server init --data-dir /var/lib/invigil
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    applied = serving.initialise_data_dir(data_dir.resolve())
    click.echo(f"{data_dir}: ready" + (f" (applied: {', '.join(applied)})" if applied else ""))


@main.command("settings")
@click.option("--markdown", is_flag=True, help="Print the table for docs/settings.md.")
def show_settings(markdown: bool) -> None:
    """List every setting with its environment variable and default.

    Example: invigil-server settings --markdown > docs/settings.md
    """
    if markdown:
        click.echo(settings_markdown(), nl=False)
        return
    for setting in SETTINGS:
        click.echo(f"{setting.env_var:<34} {setting.default!r:<24} {setting.help}")


# Review, integrity, retention and audit live in their own module; registered here.
register_review_commands(main)
