"""Files and folders only the appliance's own user can read.

Every file the hall server and its command-line tools write is created 0600 and every folder 0700 from the
start, whatever the umask of the shell that ran them: an organiser's login shell (umask 022) would otherwise
leave the database, screenshots in an export or a key readable by every account on the machine. A mode given
to ``open``/``mkdir`` is narrowed by the umask, never widened, so asking for 0600/0700 is enough; nothing is
written first and ``chmod``-ed after. A file is replaced through a private temporary file and a rename, so
a reader sees the old content or the whole new one, and a file that was readable before is not reused.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_dirs(path: Path) -> Path:
    """Make ``path`` and each missing folder above it 0700; folders that exist are left as they are."""
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        with suppress(FileExistsError):  # another process made it meanwhile
            os.mkdir(folder, DIR_MODE)
    return path


def create_file(path: Path) -> bool:
    """Create ``path`` empty and 0600 unless it exists; returns whether it was created."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        return False
    return True


def open_lock_file(path: Path) -> int:
    """A descriptor of a lock file (for ``flock``), created 0600 when missing."""
    return os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)


def _temporary(path: Path) -> tuple[Path, int]:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """Write ``path`` through a file object: a 0600 temporary file beside it, renamed over ``path`` (and
    fsynced) when the block ends without an exception; on an exception ``path`` is left untouched."""
    tmp, fd = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_file(path: Path, body: bytes) -> None:
    """Replace ``path`` with ``body`` atomically, 0600 (see :func:`replacing`)."""
    with replacing(path) as file:
        file.write(body)


def create_once(path: Path, body: bytes) -> bool:
    """Create ``path`` holding ``body`` (0600) unless it exists; returns whether this call created it.

    The file appears under its name only once it holds all of ``body`` (a hard link from a private
    temporary file), so processes starting at once all read the one file the first of them made."""
    if path.exists():
        return False
    tmp, fd = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        fsync_dir(path.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)
