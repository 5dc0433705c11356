"""The raw ceiling for ``bench/ingest.py``: a bare WSGI app that only stores each upload durably.

Per PUT/POST it reads the body, writes it to a tmp file, fsyncs it, renames it into one of 256 shard
directories and fsyncs that directory, then answers 201 - the same disk work as the hall server's blob
store, without hashing, encryption, validation, authentication or SQLite. Any other request gets 200 (the
readiness probe). It runs under gunicorn with exactly the options ``invigil-server serve`` uses
(``hall_server.serve.gunicorn_options``), so only the application differs.

Run: .venv/bin/python bench/bare_app.py --dir /tmp/bare --bind 127.0.0.1:8099 [--worker-class gevent]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STORE: Path = Path(os.environ.get("BARE_APP_DIR", "/nonexistent"))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare(store: Path) -> None:
    (store / ".tmp").mkdir(parents=True, exist_ok=True)
    for shard in range(256):
        (store / f"{shard:02x}").mkdir(exist_ok=True)


def store_body(store: Path, body: bytes) -> None:
    name = secrets.token_hex(16)
    tmp = store / ".tmp" / f"{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    final = store / name[:2] / name
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["REQUEST_METHOD"] in ("PUT", "POST"):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        if len(body) != length:
            status, out = "400 Bad Request", b'{"error":{"code":"truncated"}}'
        else:
            store_body(STORE, body)
            status, out = "201 Created", b'{"stored":true}'
    else:
        status, out = "200 OK", b'{"status":"ok"}'
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]


def main() -> None:
    global STORE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="where the uploads are written")
    parser.add_argument("--bind", default="127.0.0.1:8099")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--worker-class", choices=["gthread", "gevent", "sync"], default="gthread")
    parser.add_argument("--threads", type=int, default=32)
    args = parser.parse_args()
    if not args.bind.startswith("127.0.0.1:"):
        parser.error("the bare app binds to 127.0.0.1 only")

    from hall_server.serve import gunicorn_options

    STORE = args.dir.resolve()
    prepare(STORE)
    options = gunicorn_options(
        bind=args.bind,
        workers=args.workers,
        worker_class=args.worker_class,
        threads=args.threads,
        data_dir=STORE,
        tls_cert=None,
        tls_key=None,
        access_log=False,
    )
    if args.worker_class == "gevent":  # as hall_server.serve.run does
        from gevent import monkey

        monkey.patch_all()
    from gunicorn.app.base import BaseApplication

    class BareApp(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    BareApp().run()


if __name__ == "__main__":
    main()
