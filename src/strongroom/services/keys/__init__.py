"""Key Vault keys: RSA keys whose private half stays in the server (docs/keyvault-api.md)."""
