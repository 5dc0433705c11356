"""Running the app under gunicorn (``invigil-server serve``).

The embedded default is one gunicorn process (see docs/architecture.md for the measurement behind it):
the ``gthread`` worker serves agents from a thread pool, so blob fsyncs of different uploads overlap while
SQLite serialises the short commits. ``gevent`` is available for many idle keep-alive connections.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hall_server.store import db
from hall_server.store.blobs import BlobStore


def startup_log() -> logging.Logger:
    """The ``invigil.server`` logger, writing to stderr in the ``log_format`` setting's form until gunicorn
    takes the logging over (``run``)."""
    from hall_server.logs import formatter
    from hall_server.settings import load_settings

    handler = logging.StreamHandler()
    handler.setFormatter(formatter(load_settings()["log_format"]))
    log = logging.getLogger("invigil.server")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def prepare_data_dir(data_dir: str | Path) -> list[str]:
    """Migrate and sweep interrupted writes, once, before any worker starts; returns applied migrations."""
    applied = db.migrate(data_dir)
    BlobStore(data_dir).sweep_tmp()
    return applied


def initialise_data_dir(data_dir: Path) -> list[str]:
    """Everything a first start would create, made now (the package's postinst runs this as ``invigil``):
    the store, the master key, the service token and the cookie key, each kept when it exists."""
    from hall_server.app import load_secret_key, load_service_token
    from hall_server.settings import load_settings
    from hall_server.store import crypto

    applied = prepare_data_dir(data_dir)
    settings = load_settings()
    crypto.load_or_create_master_key(data_dir)
    load_service_token(settings, data_dir)
    load_secret_key(settings, data_dir)
    return applied


def gunicorn_options(
    *,
    bind: str,
    workers: int,
    worker_class: str,
    threads: int,
    data_dir: Path,
    tls_cert: str | None,
    tls_key: str | None,
    access_log: bool,
    control_socket: str = "gunicorn.ctl",
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bind": [bind],
        "workers": workers,
        "worker_class": worker_class,
        "threads": threads,
        "worker_connections": 4000,  # the default 1000 would cap a hall's agents
        "keepalive": 75,  # agents upload every few seconds over one kept-alive connection
        "timeout": 60,
        "graceful_timeout": 20,
        "control_socket": str(data_dir / control_socket),  # per instance, never the shared default
        "accesslog": "-" if access_log else None,
        "errorlog": "-",
        "preload_app": False,
    }
    if tls_cert or tls_key:
        if not (tls_cert and tls_key):
            raise ValueError("give both --tls-cert and --tls-key")
        options.update(certfile=tls_cert, keyfile=tls_key)
    return options


def run(options: dict[str, Any], app_config: dict[str, Any]) -> None:
    """Start gunicorn in this process with ``options``; each worker builds the app from ``app_config``."""
    # Our own log lines (policy published, mDNS, unexpected errors) and gunicorn's, in one format
    # (log_format: json lines for the journal, or text).
    from hall_server.logs import gunicorn_logconfig
    from hall_server.settings import load_settings

    log_format = load_settings(overrides=app_config)["log_format"]
    options = {**options, "logconfig_dict": gunicorn_logconfig(log_format, bool(options.get("accesslog")))}
    if options["worker_class"] == "gevent":
        from gevent import monkey

        monkey.patch_all()
    from gunicorn.app.base import BaseApplication

    class HallServer(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            from hall_server.app import create_app
            from hall_server.ingest import gaps
            from hall_server.live import announce
            from hall_server.policy_publish import start_for_app

            app = create_app(app_config)
            # In the worker: threads and sockets must not be made before gunicorn forks.
            start_for_app(app)
            gaps.start_for_app(app)
            announce.start_for_app(app, announce.api_port(options["bind"]), options.get("certfile"))
            return app

    HallServer().run()
