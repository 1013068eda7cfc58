"""The HTTP routes: native ``/v1`` API, Key Vault-compatible API, operations."""
