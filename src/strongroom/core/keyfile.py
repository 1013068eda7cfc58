"""Where the master key comes from: the environment, or a 0600 key file."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from strongroom.core.crypto import MasterKey
from strongroom.core.errors import ConfigurationError, InsecureKeyFileError

__all__ = [
    "create_key_file",
    "install_key_file",
    "pending_key_path",
    "read_key_file",
    "write_new_key_file",
]


def read_key_file(path: Path) -> MasterKey:
    """Read a key file, refusing one that group or others could read or write."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise ConfigurationError(f"master key file {path} does not exist") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot open master key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "r", encoding="ascii") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InsecureKeyFileError(
                f"master key file {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
            )
        try:
            text = handle.read()
        except UnicodeDecodeError:  # base64 is ASCII; the bytes themselves are not repeated
            raise ConfigurationError(f"master key file {path} is not base64 text") from None
        return MasterKey.from_base64(text)


def create_key_file(path: Path) -> MasterKey:
    """Make a new random key file with mode 0600, or read the one another process made first.

    The key is written to a private temporary file and linked into place, so a concurrent
    reader never sees a half-written key and two starters never end up with two keys.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key, text = MasterKey.generate()
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            return read_key_file(path)
    finally:
        temp.unlink(missing_ok=True)
    return key


def pending_key_path(path: Path) -> Path:
    """Where a replacement writes the new key before it is put in place: ``<file>.new``."""
    return path.with_name(path.name + ".new")


def write_new_key_file(path: Path) -> MasterKey:
    """A new random key written to ``path`` (mode 0600, fsynced, replacing what was there), via
    a private temporary file, so ``path`` never holds half a key."""
    key, text = MasterKey.generate()
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    _sync_directory(path.parent)
    return key


def install_key_file(new: Path, path: Path) -> None:
    """Put the key in ``new`` in place of ``path`` (an atomic rename, then the directory
    fsynced: after a crash the file holds the old key or the new one, whole)."""
    os.replace(new, path)
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
