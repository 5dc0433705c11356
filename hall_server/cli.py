"""``invigil-server``: run the hall server and look after its data directory. Thin: parse, call, echo."""

from __future__ import annotations

from pathlib import Path

import click

from hall_server import serve as serving
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
@click.option("--access-log/--no-access-log", default=False, show_default=True)
def serve(
    data_dir: Path,
    bind: str,
    tls_cert: str | None,
    tls_key: str | None,
    workers: int,
    worker_class: str,
    threads: int,
    access_log: bool,
) -> None:
    """Serve the agent API (and, once provisioned, the dashboard) under gunicorn.

    Example: invigil-server serve --data-dir ./invigil-data --bind 127.0.0.1:8080
    """
    data_dir = data_dir.resolve()
    applied = serving.prepare_data_dir(data_dir)
    if applied:
        click.echo(f"applied migrations: {', '.join(applied)}", err=True)
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
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    scheme = "https" if tls_cert else "http"
    click.echo(f"Invigil hall server on {scheme}://{bind} (data: {data_dir})", err=True)
    serving.run(options, {"data_dir": str(data_dir)})


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
