"""Rotation recommendations and lifecycle/cost analytics computed from the audit log."""
