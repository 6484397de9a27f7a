"""Destination secrets: Azure Key Vault, the development-only local store, the TTL cache in front, and
the names the app gives the secrets it writes.

May import: the base modules only (settings for typing).
"""
