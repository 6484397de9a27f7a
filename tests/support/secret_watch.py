"""Secret watch (a pytest plugin): no secret value used anywhere in the run may show up where people look.

Registered secrets (``register``) are SAS tokens (whole, and their ``sig``), client secrets and connection
strings (whole, and their AccountKey / SharedAccessSignature). They come from three places: every
token ``tests.support.sas.container_sas`` makes, every value any test writes to a secret store (the
local file store and Key Vault alike), and explicit ``register`` calls.

Watched texts, for the whole run:
- every log record of every logger (the app's ``shared`` loggers at DEBUG), message and exception text;
- every response body and header the session's API server sends (``watching`` wraps the ASGI app);
- every test's captured stdout, stderr and log sections (what test output shows);
- every blob in Azurite's containers when the session's Azurite stops (control storage included).

At the end of the session each registered value is searched in every watched text. A hit fails the run
and is reported by label, place and a fingerprint, never by the value itself.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote

import ahocorasick
import pytest

MIN_LENGTH = 12  # shorter values ("x", "value") would match innocent text
SWEEP_READS = 16  # blobs the storage sweep reads at once

_lock = threading.Lock()
_secrets: dict[str, str] = {}  # value -> label
_texts: list[tuple[str, str]] = []  # (where, text)
_stats = {"texts": 0, "chars": 0, "blobs": 0}
_from_workers: list[dict[str, Any]] = []  # under xdist, the controller's: what each worker found and searched


def pieces(value: str, label: str = "secret") -> dict[str, str]:
    """``value`` and the secret parts inside it (a SAS ``sig``, raw and decoded; an AccountKey, a
    SharedAccessSignature), each with a label, all at least MIN_LENGTH long."""
    found = {value: label}
    for part in value.replace("?", "&").replace(";", "&").replace('"', "&").split("&"):
        name, _, piece = part.strip().partition("=")
        key = name.strip().lower()
        if key == "sig":
            found[piece] = f"{label} (sig)"
            found[unquote(piece)] = f"{label} (sig, decoded)"
        elif key in {"accountkey", "sharedaccesssignature", "client_secret"}:
            found[piece] = f"{label} ({name.strip()})"
    if "sig=" in value and "&" in value:
        found[value.split("?", 1)[-1]] = f"{label} (query)"
    return {piece: name for piece, name in found.items() if len(piece) >= MIN_LENGTH}


def register(value: str | None, label: str = "secret") -> str | None:
    """Watch ``value`` and the secret pieces inside it for the rest of the run; returns ``value``."""
    if value:
        with _lock:
            for piece, name in pieces(value, label).items():
                _secrets.setdefault(piece, name)
    return value


def observe(where: str, text: str | bytes | None) -> None:
    if not text:
        return
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    with _lock:
        _texts.append((where, text))
        _stats["texts"] += 1
        _stats["chars"] += len(text)


def fingerprint(value: str) -> str:
    return f"{value[:3]}…(len {len(value)}, sha256 {hashlib.sha256(value.encode()).hexdigest()[:10]})"


def leaks() -> list[str]:
    """Each (place, secret label) where a registered value was found, the value never shown. Every value is
    looked for in one pass over each text (an Aho-Corasick automaton): a search per value and text took 20 s of
    the run at 1,500 values and 100 MB of texts, and grows with both."""
    with _lock:
        secrets = dict(_secrets)
        texts = list(_texts)
    if not secrets:
        return []
    automaton = ahocorasick.Automaton()
    for value, label in secrets.items():
        automaton.add_word(value, (value, label))
    automaton.make_automaton()
    found = {f"{label} {fingerprint(value)} in {where}"
             for where, text in texts for _, (value, label) in automaton.iter(text)}
    return sorted(found)


def secret_count() -> int:
    with _lock:
        return len(_secrets)


# --- What is watched --------------------------------------------------------------------------------------------


class _LogWatch(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            if record.exc_text:  # a traceback formatted (and redacted) when the record was made
                text += "\n" + record.exc_text
            if record.stack_info:
                text += "\n" + record.stack_info
        except Exception:  # a record that cannot be formatted is the logging module's problem, not a leak
            return
        observe(f"log record of {record.name}", text)


_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def watching(app: Callable[[_Scope, _Receive, _Send], Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """The ASGI ``app``, with every response header and body it sends watched."""

    async def watched(scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        where = f"response to {scope.get('method')} {scope.get('path')}"

        async def recording_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                observe(where + " (headers)", b"\n".join(b": ".join(pair) for pair in message.get("headers", [])))
            elif message["type"] == "http.response.body":
                observe(where, message.get("body", b""))
            await send(message)

        await app(scope, receive, recording_send)

    return watched


def sweep_storage(connection_string: str) -> None:
    """Watch every blob of every container in a storage account (run before Azurite stops): its metadata, and the
    content of each that has any, SWEEP_READS at once (one after another, 10,000 blobs took most of a minute;
    most of a run's blobs are empty index markers)."""
    from azure.storage.blob import BlobServiceClient, ContainerClient

    service = BlobServiceClient.from_connection_string(connection_string)

    def read(client: ContainerClient, name: str) -> None:
        observe(f"blob {client.container_name}/{name}", client.download_blob(name).readall())

    with ThreadPoolExecutor(max_workers=SWEEP_READS) as pool:
        reads = []
        for container in service.list_containers():
            client = service.get_container_client(container.name)
            for blob in client.list_blobs(include=["metadata"]):
                observe(f"blob {container.name}/{blob.name} (metadata)", repr(blob.metadata))
                if blob.size:  # an empty blob (an index marker, a lease blob) has nothing more to read
                    reads.append(pool.submit(read, client, blob.name))
                _stats["blobs"] += 1
        for done in reads:
            done.result()


# --- Where secrets come from ------------------------------------------------------------------------------------


def _wrap_set_secret(cls: Any) -> Callable[[], None]:
    original = cls.set_secret

    def set_secret(self: Any, name: str, value: str) -> None:
        register(value, f"secret store value ({cls.__name__})")
        original(self, name, value)

    cls.set_secret = set_secret

    def restore() -> None:
        cls.set_secret = original

    return restore


_restores: list[Callable[[], None]] = []
_handler = _LogWatch(level=logging.NOTSET)


def pytest_configure(config: pytest.Config) -> None:
    from shared.secrets.keyvault import KeyVaultSecretStore
    from shared.secrets.local_store import LocalSecretStore

    _restores.extend([_wrap_set_secret(LocalSecretStore), _wrap_set_secret(KeyVaultSecretStore)])
    logging.getLogger().addHandler(_handler)
    shared = logging.getLogger("shared")
    previous = shared.level
    shared.setLevel(logging.DEBUG)
    _restores.append(lambda: shared.setLevel(previous))
    try:
        from tests.support import keyvault

        register(keyvault.CLIENT_SECRET, "fake Key Vault client secret")
    except (ImportError, AttributeError):
        pass


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for section, content in report.sections:
        observe(f"{report.nodeid}: {section}", content)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Search now. An xdist worker (`make test` runs the suite in several) hands what it found to the
    controller, which fails the run: a worker's own exit status does not decide the run's."""
    found = leaks()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["secret_watch"] = {"found": found, "stats": dict(_stats), "secrets": secret_count()}
    for other in _from_workers:
        found.extend(other["found"])
    session.config.stash[_RESULT] = sorted(found)
    if found and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)  # an xdist hook: defined only when pytest-xdist runs the suite
def pytest_testnodedown(node: Any, error: Any) -> None:
    """An xdist worker finished: keep what its secret watch found for the controller's summary."""
    result = getattr(node, "workeroutput", {}).get("secret_watch")
    if result is not None:
        _from_workers.append(result)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    found = config.stash.get(_RESULT, None)
    if found is None:
        return
    stats, secrets = dict(_stats), secret_count()
    for other in _from_workers:
        stats = {key: stats[key] + other["stats"][key] for key in stats}
        secrets += other["secrets"]
    summary = (f"{secrets} secret values searched in {stats['texts']} texts "
               f"({stats['chars']:,} characters; {stats['blobs']} storage blobs): {len(found)} hits")
    if found:
        terminalreporter.write_sep("=", "SECRET WATCH: secrets leaked", red=True)
        for line in found:
            terminalreporter.write_line(line)
        terminalreporter.write_line(summary)
    else:
        terminalreporter.write_line(f"secret watch: {summary}")


def pytest_unconfigure(config: pytest.Config) -> None:
    logging.getLogger().removeHandler(_handler)
    while _restores:
        _restores.pop()()


_RESULT = pytest.StashKey[list[str]]()
