"""What ``strongroom status`` says about the master key's custody (pure: settings only)."""

from __future__ import annotations

from strongroom.core.config import Backend, Settings

__all__ = ["custody_warnings"]


def custody_warnings(settings: Settings) -> list[str]:
    """Warnings for a shared deployment whose master key is a plain file or variable: whoever
    reads it (a backup, the process environment, the deployment's configuration) can decrypt
    every secret and rewrite the audit chain. The embedded default is left in peace."""
    if settings.seal != "key":
        return []
    shared = settings.backend is Backend.POSTGRES or settings.state_in_postgres
    if not shared:
        return []
    where = (
        "the environment (STRONGROOM_MASTER_KEY)"
        if settings.master_key is not None
        else "a plain key file"
    )
    return [
        f"this cluster deployment's master key comes from {where}: anyone who can read it "
        "decrypts every secret; consider a quorum (STRONGROOM_SEAL=shamir, see docs/custody.md)"
    ]
