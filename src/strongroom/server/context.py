"""What every route reaches through ``request``: the wiring, the seed's services, the caller."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from strongroom.core.errors import AuthenticationError
from strongroom.core.policy import Action
from strongroom.server.guard import PRINCIPAL_KEY
from strongroom.services.access.control import Principal
from strongroom.services.audit.secrets_audit import SecretsAudit
from strongroom.services.keys.vault_keys import VaultKeys
from strongroom.services.revocation.emergency_revoke import EmergencyRevoke
from strongroom.services.rotation.secrets_rotation import SecretsRotation
from strongroom.services.secrets.secrets_manager import SecretsManager
from strongroom.services.wiring import Strongroom

__all__ = ["Services", "authorize", "authorize_listing", "principal", "services"]


@dataclass(slots=True)
class Services:
    app: Strongroom
    manager: SecretsManager
    audit: SecretsAudit
    rotation: SecretsRotation
    revoke: EmergencyRevoke
    keys: VaultKeys

    @classmethod
    def over(cls, app: Strongroom) -> Services:
        manager = SecretsManager(app)
        audit = SecretsAudit(app)
        return cls(
            app=app,
            manager=manager,
            audit=audit,
            rotation=SecretsRotation(app),
            revoke=EmergencyRevoke(app),
            keys=VaultKeys(app),
        )


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def principal(request: Request) -> Principal:
    found = request.scope.get(PRINCIPAL_KEY)
    if not isinstance(found, Principal):  # only public paths run without one
        raise AuthenticationError("a valid bearer token is required")
    return found


async def authorize(request: Request, action: Action, name: str | None) -> Principal:
    """The caller, once its policies allow ``action`` on ``name`` (403, audited, if not)."""
    caller = principal(request)
    if not caller.may(action, name):
        await services(request).app.access.require(caller, action, name)
    return caller


async def authorize_listing(request: Request, action: Action) -> Principal:
    """A listing needs ``action`` on some pattern; the caller filters the answer to the names
    its grants cover (403, audited, when it holds the action nowhere)."""
    caller = principal(request)
    if not caller.holds(action):
        await services(request).app.access.require(caller, action, None)
    return caller
