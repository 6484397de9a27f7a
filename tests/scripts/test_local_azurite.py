"""scripts.local_azurite: which server on a port is this checkout's Azurite, and what the local tools connect to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scripts import local_azurite
from scripts.local_azurite import AzuriteError
from scripts.local_server import free_port
from tests.support.azurite import ACCOUNT_KEY, Azurite


@pytest.mark.parametrize(("value", "port"), [(None, 10000), ("", 10000), (" 10500 ", 10500), ("65535", 65535)])
def test_azurite_port_comes_from_azurite_port(value: str | None, port: int) -> None:
    assert local_azurite.port_from_env({} if value is None else {"AZURITE_PORT": value}) == port


@pytest.mark.parametrize("value", ["abc", "0", "65536", "-1", "10.5"])
def test_an_azurite_port_that_is_not_a_port_is_refused_by_name(value: str) -> None:
    with pytest.raises(AzuriteError, match=f"AZURITE_PORT='{value}' is not a TCP port"):
        local_azurite.port_from_env({"AZURITE_PORT": value})


def test_development_storage_becomes_the_explicit_azurite_on_the_chosen_port() -> None:
    environ = {"AzureWebJobsStorage": "UseDevelopmentStorage=true;", "CONTROL_STORAGE_CONNECTION": "x=y",
               "OTHER": "UseDevelopmentStorage=true"}
    assert local_azurite.use_azurite_port(environ, 10500) == ["AzureWebJobsStorage"]
    assert environ["AzureWebJobsStorage"] == (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
        "BlobEndpoint=http://127.0.0.1:10500/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10501/devstoreaccount1;"
    )
    assert environ["CONTROL_STORAGE_CONNECTION"] == "x=y" and environ["OTHER"] == "UseDevelopmentStorage=true"


def test_a_pid_file_does_not_make_a_server_ours_unless_it_runs_azurite_on_that_port_with_that_folder(
    azurite: Azurite, tmp_path: Path
) -> None:
    """The session's Azurite is real, but no `start` of this folder launched it: a pid file naming it, or naming
    a live process that is not Azurite, or a dead one, changes nothing, and `stop` never touches it."""
    assert azurite.process is not None
    pid_file = tmp_path / str(azurite.port) / local_azurite.PID_FILE
    pid_file.parent.mkdir()
    for pid in (azurite.process.pid, os.getpid(), 2**22 + 1):
        pid_file.write_text(f"{pid}\n")
        state = local_azurite.inspect(azurite.port, tmp_path)
        assert state.state == "foreign", pid
        assert state.owner().startswith("NOT this checkout's Azurite (")
        assert local_azurite.stop(azurite.port, tmp_path) == []
        assert local_azurite.stop(None, tmp_path) == []
    assert azurite.process.poll() is None
    assert local_azurite.inspect(free_port(), tmp_path).state == "free"


def test_start_refuses_a_port_held_by_another_server_naming_it_and_a_free_one(
    azurite: Azurite, tmp_path: Path
) -> None:
    with pytest.raises(AzuriteError) as refused:
        local_azurite.start(azurite.port, tmp_path, command="make serve")
    message = str(refused.value)
    assert message.startswith(f"127.0.0.1:{azurite.port} (AZURITE_PORT={azurite.port}) is held by ")
    suggested = int(message.split("`AZURITE_PORT=")[1].split()[0])
    assert suggested != azurite.port and f"`AZURITE_PORT={suggested} make serve` ({suggested} is free now)" in message
    assert not (tmp_path / str(azurite.port) / local_azurite.PID_FILE).exists()
