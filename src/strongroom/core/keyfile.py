"""Where the master key comes from: the environment, or a 0600 key file."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from strongroom.core.crypto import MasterKey
from strongroom.core.errors import ConfigurationError, InsecureKeyFileError

__all__ = ["create_key_file", "read_key_file"]


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
