"""revocation."""
