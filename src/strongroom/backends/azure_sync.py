"""Making a secondary vault match the primary for one secret name: the one step that both the
outbox's copier and ``strongroom vaults reconcile`` take (backends.azure_regions).

Key Vault gives every version its own id, and the SDK cannot choose one, so a copy carries the
primary's id in a tag (``ORIGIN_TAG``) and callers keep seeing the ids they know. A version the
primary will not hand out (disabled, revoked, expired, not yet valid) is copied without its
value, as a disabled placeholder: a revoked value never leaves the primary, and the placeholder
is replaced by a real copy once the primary serves the version again. The step is idempotent:
run twice, the second run finds nothing to change.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from strongroom.backends.azure_sdk import ORIGIN_TAG, PLACEHOLDER_TAG, REVOKED_TAG
from strongroom.core.errors import (
    PermissionDeniedError,
    SecretDisabledError,
    SecretExpiredError,
    SecretNotFoundError,
    SecretNotYetValidError,
    SecretRevokedError,
)

if TYPE_CHECKING:
    from strongroom.backends.azure import AzureKeyVaultStore

__all__ = ["origin_of", "raw_versions", "sync_name", "twins"]

_OLDEST = datetime.min.replace(tzinfo=UTC)
_UNREADABLE = (
    SecretDisabledError,
    SecretExpiredError,
    SecretNotYetValidError,
    SecretRevokedError,
    PermissionDeniedError,
)
_PLACEHOLDER_VALUE = "-"


def origin_of(item: Any) -> str:
    """The version id callers know: the primary's, also on a secondary's copy."""
    return str((item.tags or {}).get(ORIGIN_TAG) or item.version)


def _is_placeholder(item: Any) -> bool:
    return PLACEHOLDER_TAG in (item.tags or {})


async def raw_versions(store: AzureKeyVaultStore, name: str) -> list[Any]:
    """The SDK's properties of every live version of ``name``, oldest first."""
    try:
        items = await store._collect(
            lambda: store.client.list_properties_of_secret_versions(name), name
        )
    except SecretNotFoundError:
        return []
    # Key Vault lists newest first; versions made in the same second keep that order.
    ordered = sorted(items, key=lambda i: i.created_on or _OLDEST, reverse=True)
    ordered.reverse()
    return ordered


def twins(items: Iterable[Any]) -> dict[str, Any]:
    """A secondary's copy of each primary version (oldest-first input: the newest copy of a
    version wins, and a real copy wins over a placeholder)."""
    found: dict[str, Any] = {}
    for item in items:
        origin = origin_of(item)
        seen = found.get(origin)
        if seen is None or _is_placeholder(seen) or not _is_placeholder(item):
            found[origin] = item
    return found


def _wanted_tags(item: Any) -> dict[str, str]:
    return {**(item.tags or {}), ORIGIN_TAG: str(item.version)}


def _differences(item: Any, twin: Any) -> list[str]:
    if _is_placeholder(twin):
        return []  # a placeholder stays disabled; it is replaced, never switched on
    have = {k: v for k, v in (twin.tags or {}).items() if k != PLACEHOLDER_TAG}
    found = []
    for field in ("enabled", "expires_on", "not_before", "content_type"):
        if getattr(item, field) != getattr(twin, field):
            found.append(field)
    if have != _wanted_tags(item):
        found.append("tags")
    return found


async def _value(primary: AzureKeyVaultStore, item: Any) -> str | None:
    """The version's value, or None where the primary does not hand it out."""
    if not item.enabled or REVOKED_TAG in (item.tags or {}):
        return None
    try:
        secret = await primary._call(
            lambda: primary.client.get_secret(item.name, item.version), item.name, item.version
        )
    except _UNREADABLE:
        return None
    return str(secret.value or "")


async def _copy(
    primary: AzureKeyVaultStore, secondary: AzureKeyVaultStore, item: Any, twin: Any
) -> bool:
    """Write a copy of ``item`` to the secondary; False if there was nothing better to write."""
    value = await _value(primary, item)
    tags, enabled = _wanted_tags(item), bool(item.enabled)
    if value is None:
        if twin is not None:
            return False  # the placeholder there already says all that can be said
        value, enabled = _PLACEHOLDER_VALUE, False
        tags[PLACEHOLDER_TAG] = "1"
    await secondary._call(
        lambda: secondary.client.set_secret(
            item.name, value, enabled=enabled, tags=tags, content_type=item.content_type,
            not_before=item.not_before, expires_on=item.expires_on,
        ),
        item.name,
    )  # fmt: skip
    return True


async def _update(secondary: AzureKeyVaultStore, item: Any, twin: Any) -> None:
    await secondary._call(
        lambda: secondary.client.update_secret_properties(
            twin.name, twin.version, enabled=bool(item.enabled), tags=_wanted_tags(item),
            content_type=item.content_type, not_before=item.not_before,
            expires_on=item.expires_on,
        ),
        twin.name,
    )  # fmt: skip


async def _absent_at_primary(
    primary: AzureKeyVaultStore, secondary: AzureKeyVaultStore, name: str, live: bool, repair: bool
) -> list[str]:
    """The primary holds no live version: the secondary must not either (deleted or purged)."""
    problems = []
    deleted_at_primary = await primary._deleted_exists(name)
    deleted_there = False
    if live:
        problems.append("live on the secondary, not on the primary")
        if repair:
            await secondary._call(lambda: secondary.client.delete_secret(name), name)
            deleted_there = True
    if not deleted_at_primary and (deleted_there or await secondary._deleted_exists(name)):
        if not live:
            problems.append("held as deleted on the secondary, purged on the primary")
        if repair:
            await secondary._call(lambda: secondary.client.purge_deleted_secret(name), name)
    return problems


async def sync_name(
    primary: AzureKeyVaultStore, secondary: AzureKeyVaultStore, name: str, *, repair: bool = True
) -> list[str]:
    """What differs for ``name`` between the vaults (empty when they match); with ``repair``,
    the secondary is changed to match."""
    ours, theirs = await raw_versions(primary, name), await raw_versions(secondary, name)
    if not ours:
        return await _absent_at_primary(primary, secondary, name, bool(theirs), repair)
    problems: list[str] = []
    if not theirs and await secondary._deleted_exists(name):
        problems.append("deleted on the secondary, live on the primary")
        if not repair:
            return problems
        await secondary._call(lambda: secondary.client.recover_deleted_secret(name), name)
        theirs = await raw_versions(secondary, name)
    newest = await _versions(primary, secondary, ours, theirs, problems, repair)
    await _orphans(secondary, name, ours, theirs, problems, repair)
    if newest != str(ours[-1].version):
        problems.append("the current version differs")
        if repair:
            await _copy(primary, secondary, ours[-1], None)
    return problems


async def _versions(
    primary: AzureKeyVaultStore,
    secondary: AzureKeyVaultStore,
    ours: list[Any],
    theirs: list[Any],
    problems: list[str],
    repair: bool,
) -> str | None:
    """Copy missing versions and align properties, oldest first; the secondary's current
    version id (as the primary knows it) afterwards."""
    copies = twins(theirs)
    newest = origin_of(theirs[-1]) if theirs else None
    for item in ours:
        twin = copies.get(str(item.version))
        if twin is None or (_is_placeholder(twin) and item.enabled):
            if twin is None:
                problems.append(f"version {item.version} is missing")
            if repair and await _copy(primary, secondary, item, twin):
                newest = str(item.version)
                if twin is not None:
                    problems.append(f"version {item.version} was a placeholder")
            continue
        changed = _differences(item, twin)
        if changed:
            problems.append(f"version {item.version} differs: {', '.join(changed)}")
            if repair:
                await _update(secondary, item, twin)
    return newest


async def _orphans(
    secondary: AzureKeyVaultStore,
    name: str,
    ours: list[Any],
    theirs: list[Any],
    problems: list[str],
    repair: bool,
) -> None:
    """A version the primary never had (written to the secondary directly) is switched off."""
    known = {str(item.version) for item in ours}
    for item in theirs:
        if origin_of(item) in known or not item.enabled:
            continue
        problems.append(f"version {origin_of(item)} is not on the primary")
        if repair:
            await _switch_off(secondary, name, str(item.version))


async def _switch_off(secondary: AzureKeyVaultStore, name: str, native: str) -> None:
    await secondary._call(
        lambda: secondary.client.update_secret_properties(name, native, enabled=False), name
    )
