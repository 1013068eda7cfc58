"""Profiles follow from the environment; the actor context follows the caller."""

from __future__ import annotations

import asyncio
import getpass
import socket

import pytest

from strongroom import Backend, Settings, acting_as, current_actor
from strongroom.core.errors import ConfigurationError, ValidationError

PROFILE_VARS = ["AZURE_KEY_VAULT_URL", "DATABASE_URL", "STRONGROOM_BACKEND"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in PROFILE_VARS:
        monkeypatch.delenv(var, raising=False)


def test_embedded_sqlite_is_the_default() -> None:
    assert Settings().backend is Backend.SQLITE


def test_database_url_selects_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    settings = Settings()
    assert settings.backend is Backend.POSTGRES
    assert "postgresql://u@h/db" not in repr(settings)  # the URL may hold a password


def test_empty_azure_url_is_mock_mode_as_in_the_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_KEY_VAULT_URL", "")
    assert Settings().backend is Backend.SQLITE
    monkeypatch.setenv("AZURE_KEY_VAULT_URL", "https://v.vault.azure.net/")
    assert Settings().backend is Backend.AZURE


def test_explicit_backend_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("STRONGROOM_BACKEND", "memory")
    assert Settings().backend is Backend.MEMORY


def test_non_postgres_database_url_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        Settings(DATABASE_URL="mysql://x").postgres_dsn()


def test_master_key_is_hidden_in_repr() -> None:
    settings = Settings(STRONGROOM_MASTER_KEY="c2VjcmV0LW1hc3Rlci1rZXktYmFzZTY0LXRleHQtMzI=")
    assert "c2VjcmV0" not in repr(settings)


def test_default_actor_is_os_user_at_host() -> None:
    assert current_actor().id == f"{getpass.getuser()}@{socket.gethostname()}"


async def test_acting_as_reaches_tasks_and_is_undone() -> None:
    async def who() -> tuple[str, str | None, str | None]:
        actor = current_actor()
        return actor.id, actor.ip, actor.user_agent

    with acting_as("alice", ip="10.1.2.3", user_agent="curl/8"):
        assert await asyncio.create_task(who()) == ("alice", "10.1.2.3", "curl/8")
        with acting_as("bob"):
            assert current_actor().id == "bob"
        assert current_actor().id == "alice"
    assert current_actor().id != "alice"


def test_acting_as_needs_an_id() -> None:
    with pytest.raises(ValidationError), acting_as(""):
        pass


def test_acting_as_is_undone_when_the_block_raises_and_may_be_entered_again() -> None:
    before = current_actor().id
    being = acting_as("carol", ip="10.0.0.9")

    def fails_inside() -> None:
        with being as actor:
            assert (actor.id, current_actor().ip) == ("carol", "10.0.0.9")
            raise KeyError("inside")

    with pytest.raises(KeyError):
        fails_inside()
    assert current_actor().id == before
    with being:  # again, after it ended
        assert current_actor().id == "carol"
    assert current_actor().id == before


def test_acting_as_is_not_entered_twice_at_once() -> None:
    being = acting_as("dave")
    with being, pytest.raises(RuntimeError), being:
        pass
    assert current_actor().id != "dave"


def test_acting_as_cleans_what_no_audit_store_can_keep() -> None:
    with acting_as("eve\x00x", ip="10.0.0.1", user_agent="ua\ud800" + "z" * 600) as actor:
        assert actor.id == "eve\ufffdx"
        assert actor.user_agent == "ua\ufffd" + "z" * 509
        assert actor.ip == "10.0.0.1"
    with acting_as("f" * 300) as actor:
        assert actor.id == "f" * 256


def test_home_comes_only_from_strongroom_home(monkeypatch: pytest.MonkeyPatch) -> None:
    # Field names are not environment names: $HOME must not become the data directory.
    monkeypatch.delenv("STRONGROOM_HOME", raising=False)
    monkeypatch.setenv("HOME", "/somewhere/else")
    assert str(Settings().home).endswith(".local/share/strongroom")
    monkeypatch.setenv("STRONGROOM_HOME", "/srv/strongroom")
    assert str(Settings().home) == "/srv/strongroom"


@pytest.mark.parametrize(
    "value", ["http://login.example/t", "https://a,b", 'https://a"b', "https://a=b", "https://a b"]
)
def test_key_vault_challenge_values_are_refused_when_clients_could_not_parse_them(
    value: str,
) -> None:
    with pytest.raises(ConfigurationError):
        Settings(STRONGROOM_KV_AUTHORITY=value)
    with pytest.raises(ConfigurationError):
        Settings(STRONGROOM_KV_RESOURCE=value)
    assert Settings(STRONGROOM_KV_RESOURCE="https://vault.example").kv_resource
