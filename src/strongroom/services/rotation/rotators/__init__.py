"""Target systems a rotation applies a new value to before it becomes current."""

from strongroom.services.rotation.rotators.base import Rotator
from strongroom.services.rotation.rotators.postgres_role import (
    PostgresRoleRotator,
    scram_sha256_verifier,
)

__all__ = ["PostgresRoleRotator", "Rotator", "scram_sha256_verifier"]
