"""The HTTP API: the FastAPI apps, error answers, the OpenAPI document, and the two HTTP functions.

Owns: request parsing and response shaping only; every route calls one plain function below it.
May import: intake, export, destinations, control, formats, secrets, and the base modules
(settings, errors, logging_setup). The composition root (shared.services) only for typing.
"""
