"""The OpenAPI document as a contract in tests: real answers checked against the schemas it declares for them,
and a client generated from it (openapi-python-client) at test time."""

from __future__ import annotations

import copy
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOCUMENT_URI = "urn:export-api:openapi.json"


def strict(node: Any) -> Any:
    """A copy of a schema in which every object that lists its properties refuses any other: an answer with a
    field the document does not declare fails (the published document stays open to additions)."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    found = {key: strict(value) for key, value in node.items()}
    if "properties" in node and "additionalProperties" not in node:
        found["additionalProperties"] = False
    return found


def declared_response(document: dict[str, Any], template: str, method: str, status: int) -> dict[str, Any]:
    """The response the document declares for a status: its own, else its class (4XX), else `default`."""
    responses = document["paths"][template][method.lower()]["responses"]
    for key in (str(status), f"{status // 100}XX", "default"):
        if key in responses:
            return dict(responses[key])
    raise AssertionError(f"{method} {template} answered {status}, which the document does not declare "
                         f"(it declares {sorted(responses)})")


class Contract:
    """Checks answers against a document: the status is declared, and the body is what it says, exactly."""

    def __init__(self, document: dict[str, Any]):
        self.document = document
        strict_document = strict(copy.deepcopy(document))
        resource = Resource.from_contents(strict_document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
        self.checked: list[tuple[str, str, int]] = []

    def schema_of(self, template: str, method: str, status: int) -> dict[str, Any] | None:
        """The declared JSON schema of the answer (as a $ref into the document), or None for no body."""
        response = declared_response(self.document, template, method, status)
        content = response.get("content")
        if not content:
            return None
        assert list(content) == ["application/json"], (template, method, status, list(content))
        schema = content["application/json"]["schema"]
        assert schema, f"{method} {template} {status}: the document declares an empty schema"
        ref = schema["$ref"]
        return {"$ref": DOCUMENT_URI + ref}

    def check(self, response: httpx.Response, template: str) -> Any:
        """Validate one real answer; return its JSON body (None for none)."""
        method = response.request.method
        schema = self.schema_of(template, method, response.status_code)
        self.checked.append((method.lower(), template, response.status_code))
        if schema is None:
            assert not response.content, (method, template, response.status_code, response.text)
            return None
        assert response.headers["content-type"].split(";")[0] == "application/json", response.headers
        body = response.json()
        validator = Draft202012Validator(schema, registry=self.registry,
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        problems = [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
                    for e in validator.iter_errors(body)]
        assert not problems, (f"{method} {template} {response.status_code}: the answer does not match the "
                              f"document:\n" + "\n".join(problems) + f"\n{response.text}")
        return body


def generate_client(document_path: Path, output: Path) -> str:
    """Generate a Python client package from a document into `output` (its name is the package's); return
    what the generator printed. No formatter runs on it (post_hooks: none): the generated code is used as is."""
    config = output.parent / "openapi-python-client.yaml"
    config.write_text("post_hooks: []\n")
    generator = Path(sys.executable).with_name("openapi-python-client")
    done = subprocess.run(
        [str(generator), "generate", "--path", str(document_path), "--meta", "none", "--output-path", str(output),
         "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def import_package(root: Path, name: str) -> Iterator[ModuleType]:
    """Import a package from `root` for a while, then forget it (a generator for a fixture)."""
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(root))
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]
