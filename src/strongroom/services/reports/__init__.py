"""Compliance reports: collected from the stores, rendered, digested and signed."""
