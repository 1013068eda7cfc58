"""The HTTP service: the native REST API, the Key Vault-compatible API, health and metrics."""
