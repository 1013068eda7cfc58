"""Custody of the master key: a quorum's shares, a sealed start and unseal (docs/custody.md)."""
