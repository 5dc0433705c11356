"""``invigil-provision certs ...`` and ``bundle``: the hall CA, the server certificate, the agent bundle."""

from __future__ import annotations

from pathlib import Path

import click

from hall_server.store import private_files
from provisioning import bundle as agent_bundle
from provisioning import exams, halls, tlsdir
from provisioning.cli.context import Session
from provisioning.errors import Conflict, NotFound

pass_session = click.make_pass_decorator(Session)
tls_dir_option = click.option(
    "--out",
    "--tls-dir",
    "tls_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of ca.pem, ca.key, server.pem, server.key [default: DATA_DIR/tls].",
)


def _tls_dir(session: Session, tls_dir: Path | None) -> Path:
    return tls_dir if tls_dir is not None else tlsdir.default_dir(session.data_dir)


@click.group()
def certs() -> None:
    """The hall CA (shipped to agents in the bundle) and the server certificate it signs.

    \b
    Example:
      invigil-provision certs show
    """


@certs.command("init")
@click.option("--hall", "hall_name", required=True, help="The hall this CA belongs to.")
@click.option(
    "--name",
    "names",
    multiple=True,
    required=True,
    metavar="HOST_OR_IP",
    help="A name or address agents use to reach the server (repeatable).",
)
@tls_dir_option
@click.option("--force", is_flag=True, help="Replace an existing CA (every bundle must then be remade).")
@pass_session
def certs_init(
    session: Session, hall_name: str, names: tuple[str, ...], tls_dir: Path | None, force: bool
) -> None:
    """Make the hall CA and a server certificate for the given names.

    An existing CA is kept (bundles already handed out trust it); the server certificate is reissued
    only when its names change or it nears expiry.

    \b
    Example:
      invigil-provision certs init --hall "Hall A" --name 10.20.0.1 --name invigil.hall-a.lan
    """
    directory = _tls_dir(session, tls_dir)
    with session.store() as store:
        halls.get_hall(store, hall_name)
    result = tlsdir.init_tls(directory, hall_name, list(names), force=force)
    info = tlsdir.describe(directory)
    ca_state = "created" if result.ca_created else "kept"
    server_state = "issued" if result.server_issued else "unchanged"
    session.emit(
        {**info, "ca_created": result.ca_created, "server_issued": result.server_issued},
        [
            f"hall CA {ca_state}: {directory / tlsdir.CA_CERT} (sha256 {info['ca']['sha256'][:16]}...)",
            f"server certificate {server_state}: {directory / tlsdir.SERVER_CERT}",
            f"  for {', '.join(result.names)}",
            f"keys (mode 0600): {directory / tlsdir.CA_KEY}, {directory / tlsdir.SERVER_KEY}",
        ],
    )


@certs.command("show")
@tls_dir_option
@pass_session
def certs_show(session: Session, tls_dir: Path | None) -> None:
    """Show the hall CA and server certificate: names, expiry, fingerprints, whether the chain holds.

    \b
    Example:
      invigil-provision certs show --tls-dir /var/lib/invigil/tls
    """
    info = tlsdir.describe(_tls_dir(session, tls_dir))
    lines = [
        f"hall CA      {info['ca']['subject']}, until {info['ca']['not_after']}",
        f"  sha256     {info['ca']['sha256']}",
    ]
    server = info["server"]
    if server is None:
        lines.append("server cert  none: run `invigil-provision certs init`")
    else:
        chain = "signed by the hall CA" if server["issued_by_hall_ca"] else "NOT signed by this hall CA"
        lines += [f"server cert  {', '.join(server['names'])}, until {server['not_after']}", f"  {chain}"]
    session.emit(info, lines)


@click.command("bundle")
@click.argument("exam_id", type=int, required=False)
@click.option("--hall", "hall_name", help="Make a bundle for the hall rather than one exam.")
@click.option(
    "--out",
    "out_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the bundle (JSON, no secrets in it).",
)
@click.option(
    "--server-url",
    "server_urls",
    multiple=True,
    required=True,
    metavar="URL",
    help="https://HOST:PORT where agents reach the server (repeatable, tried in order).",
)
@click.option(
    "--tls-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the hall CA is [default: DATA_DIR/tls].",
)
@pass_session
def bundle(
    session: Session,
    exam_id: int | None,
    hall_name: str | None,
    out_file: Path,
    server_urls: tuple[str, ...],
    tls_dir: Path | None,
) -> None:
    """Write the agent bundle for EXAM_ID (or --hall NAME): hall, protocol version, hall CA, server URLs.

    Students start the agent with it; the agent trusts only this CA (docs/provisioning.md). Like every file
    the appliance writes it is created 0600; it holds no secret, so copy it to wherever students get it.

    \b
    Example:
      invigil-provision bundle 3 --server-url https://10.20.0.1:8443 --out linalg-bundle.json
    """
    if (exam_id is None) == (hall_name is None):
        raise click.UsageError("give exactly one of EXAM_ID or --hall NAME")
    exam_info = None
    with session.store() as store:
        if exam_id is not None:
            record = exams.get_exam(store, exam_id)
            hall_name = str(record["hall"])
            exam_info = {k: record[k] for k in ("id", "title", "starts_at", "ends_at")}
        else:
            halls.get_hall(store, str(hall_name))
    assert hall_name is not None
    directory = _tls_dir(session, tls_dir)
    ca_pem = directory / tlsdir.CA_CERT
    if not ca_pem.exists() or not (directory / tlsdir.SERVER_CERT).exists():
        raise NotFound(
            f"no hall CA and server certificate in {directory}; run `invigil-provision certs init`"
        )
    subject = tlsdir.describe(directory)["ca"]["subject"]
    if subject != tlsdir.ca_common_name(hall_name):
        raise Conflict(f"the CA in {directory} is {subject!r}, not hall {hall_name!r}'s; give its --tls-dir")
    names = tlsdir.server_names(directory)
    urls = [agent_bundle.check_server_url(url, names) for url in server_urls]
    document = agent_bundle.build_bundle(hall_name, ca_pem.read_bytes(), urls, exam_info)
    private_files.write_file(out_file, agent_bundle.dumps(document).encode())
    session.emit(
        {"path": str(out_file), **document},
        f"wrote {out_file}: hall {hall_name!r}, {len(urls)} server URL(s), CA sha256 "
        f"{document['ca_sha256'][:16]}...",
    )
