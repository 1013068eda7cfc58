"""Policies and bindings: the administration half of access control (tokens and checks are in
:mod:`.control`). Every change is audited and bumps the deployment's access generation, so a
changed policy takes effect in every process at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strongroom.core.actor import current_actor
from strongroom.core.audit import AuditAction
from strongroom.core.errors import AccessObjectNotFoundError, ValidationError
from strongroom.core.policy import Policy, validate_identity, validate_policy_name
from strongroom.db.access_store import AccessStore

if TYPE_CHECKING:
    from strongroom.services.wiring import Strongroom

__all__ = ["PolicyAdministration"]


class PolicyAdministration:
    """Built-in and stored policies, and which identities hold them."""

    _app: Strongroom
    store: AccessStore
    _builtin: dict[str, Policy]

    async def _changed(self) -> None:
        raise NotImplementedError  # AccessControl bumps the access generation

    async def put_policy(self, policy: Policy) -> Policy:
        if policy.name in self._builtin:
            raise ValidationError(f"policy {policy.name!r} is built in and cannot be changed")
        grants = [g.to_dict() for g in policy.grants]
        async with self._app.audit.operation(
            AuditAction.ACCESS_CHANGE, None, operation="policy.put", policy=policy.name
        ):
            await self.store.put_policy(
                policy.name, policy.description, grants, current_actor().id, self._app.clock()
            )
        await self._changed()
        return policy

    async def get_policy(self, name: str) -> Policy:
        validate_policy_name(name)
        if name in self._builtin:
            return self._builtin[name]
        record = await self.store.get_policy(name)
        if record is None:
            raise AccessObjectNotFoundError(f"no policy named {name!r}")
        return Policy.build(record.name, record.grants, record.description)

    async def list_policies(self) -> list[Policy]:
        stored = [
            Policy.build(r.name, r.grants, r.description) for r in await self.store.list_policies()
        ]
        return sorted([*self._builtin.values(), *stored], key=lambda p: p.name)

    async def delete_policy(self, name: str) -> None:
        validate_policy_name(name)
        if name in self._builtin:
            raise ValidationError(f"policy {name!r} is built in and cannot be deleted")
        async with self._app.audit.operation(
            AuditAction.ACCESS_CHANGE, None, operation="policy.delete", policy=name
        ):
            if not await self.store.delete_policy(name):
                raise AccessObjectNotFoundError(f"no policy named {name!r}")
        await self._changed()

    async def _require_policy(self, name: str) -> None:
        await self.get_policy(name)

    async def attach(self, identity: str, policy: str) -> list[str]:
        validate_identity(identity)
        await self._require_policy(policy)
        async with self._app.audit.operation(
            AuditAction.ACCESS_CHANGE, None, operation="policy.attach", identity=identity,
            policy=policy,
        ):  # fmt: skip
            await self.store.attach(identity, policy)
        await self._changed()
        return await self.store.policies_of(identity)

    async def detach(self, identity: str, policy: str) -> list[str]:
        validate_identity(identity)
        validate_policy_name(policy)
        async with self._app.audit.operation(
            AuditAction.ACCESS_CHANGE, None, operation="policy.detach", identity=identity,
            policy=policy,
        ):  # fmt: skip
            if not await self.store.detach(identity, policy):
                raise AccessObjectNotFoundError(
                    f"identity {identity!r} does not hold policy {policy!r}"
                )
        await self._changed()
        return await self.store.policies_of(identity)

    async def identities(self) -> list[dict[str, Any]]:
        """Every identity that holds a policy or a token, with its policies and live tokens."""
        found: dict[str, dict[str, Any]] = {}
        for identity, policy in await self.store.bindings():
            found.setdefault(identity, {"policies": [], "tokens": 0})["policies"].append(policy)
        now = self._app.clock()
        for token in await self.store.list_tokens():
            entry = found.setdefault(token.identity, {"policies": [], "tokens": 0})
            live = token.revoked_at is None and (token.expires_at is None or token.expires_at > now)
            entry["tokens"] += int(live)
        return [{"identity": k, **v} for k, v in sorted(found.items())]
