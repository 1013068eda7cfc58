"""The real-server harness for tests/server (kept at the top of tests/ as helpers_serve, so the
store suite can start a Key Vault-compatible endpoint too)."""

from helpers_serve import Served, free_socket, serve, server_settings

__all__ = ["Served", "free_socket", "serve", "server_settings"]
