"""Destination secrets: Azure Key Vault, the development-only local store, the TTL cache in front, and
the names the app gives the secrets it writes.

Modules: `store` (the `SecretStore` protocol and its errors), `names`, `keyvault`, `local_store`, `cache`, and
`factory` (which store the settings ask for).

May import: the base modules only (settings for typing).
"""
