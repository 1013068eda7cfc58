"""What ``strongroom secret get`` does once its command line is parsed, without typer.

Both ways in share it: the typer command (``secret get --help``, unusual spellings) and the
hot path (:mod:`strongroom.cli.hotpath`) that scripts take, so the two cannot drift apart.
"""

from __future__ import annotations

import json as jsonlib
import sys
from typing import TYPE_CHECKING, Any

from strongroom.cli.runtime import CliState, NotFoundError, UsageError, output, run_facade
from strongroom.services.secrets.secrets_manager import SecretsManager

if TYPE_CHECKING:
    import typer

__all__ = ["pick_field", "print_value"]


def pick_field(name: str, decoded: Any, field: str) -> Any:
    """One field of a JSON object secret (errors name the secret and field, never a value)."""
    if not isinstance(decoded, dict):
        raise UsageError(f"secret {name!r} is not a JSON object; --field needs one")
    if field not in decoded:
        raise NotFoundError(f"secret {name!r} has no field {field!r}")
    return decoded[field]


def print_value(
    ctx: typer.Context | CliState,
    name: str,
    *,
    version: str | None = None,
    json: bool = False,
    field: str | None = None,
) -> None:
    """Read one value (an audited read) and print it: the exact stored text, with a newline
    only when stdout is a terminal; or name, version, content type and value as JSON."""
    out = output(ctx, json=json)

    async def read(manager: SecretsManager) -> tuple[dict[str, Any], bytes, Any]:
        bundle = await manager.get_secret_bundle(name, version)
        return bundle.properties.to_dict(), bundle.value.reveal_bytes(), bundle.value.reveal()

    props, data, decoded = run_facade(ctx, SecretsManager, read)
    if field is not None:
        decoded = pick_field(props["name"], decoded, field)
        data = (
            decoded if isinstance(decoded, str) else jsonlib.dumps(decoded, ensure_ascii=False)
        ).encode("utf-8")
    if out.json:
        keys = ("name", "version", "content_type")
        out.data({**{k: props[k] for k in keys}, "value": decoded})
        return
    stream = sys.stdout.buffer
    stream.write(data)
    if sys.stdout.isatty():
        stream.write(b"\n")
    stream.flush()
