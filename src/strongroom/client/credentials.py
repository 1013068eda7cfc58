"""The per-user credential file of ``strongroom login`` (mode 0600, like ``~/.vault-token``).

It holds one token together with the address it was issued for: a token is only ever sent to
the server it came from, so pointing STRONGROOM_ADDR elsewhere never leaks it.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from strongroom.core.errors import ConfigurationError, InsecureKeyFileError

__all__ = ["Credential", "credential_path", "forget", "load", "normalize_addr", "save"]


@dataclass(frozen=True, slots=True)
class Credential:
    """A stored token and the server address it belongs to (``repr`` hides the token)."""

    addr: str
    token: str

    def __repr__(self) -> str:
        return f"Credential(addr={self.addr!r})"

    __str__ = __repr__


def normalize_addr(addr: str) -> str:
    return addr.strip().rstrip("/")


def credential_path() -> Path:
    """``$STRONGROOM_CREDENTIALS``, else ``$XDG_CONFIG_HOME/strongroom/credentials``, else
    ``~/.config/strongroom/credentials``."""
    explicit = os.environ.get("STRONGROOM_CREDENTIALS")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "strongroom" / "credentials"


def save(addr: str, token: str, path: Path | None = None) -> Path:
    """Write the credential with mode 0600 (never readable by others, even for an instant)."""
    path = path or credential_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = json.dumps({"addr": normalize_addr(addr), "token": token}).encode()
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    return path


def load(path: Path | None = None) -> Credential | None:
    """The stored credential, or None; a file others can read is refused, not used."""
    path = path or credential_path()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureKeyFileError(
            f"credential file {path} is readable by others; run `chmod 600 {path}` or "
            "`strongroom login` again"
        )
    try:
        doc = json.loads(path.read_text("utf-8"))
        return Credential(addr=normalize_addr(str(doc["addr"])), token=str(doc["token"]))
    except (ValueError, KeyError, TypeError):
        raise ConfigurationError(
            f"credential file {path} is damaged; run `strongroom login` again"
        ) from None


def forget(path: Path | None = None) -> bool:
    """Remove the credential file; False when there was none."""
    path = path or credential_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
