"""Where the master key comes from: the embedded profile's 0600 key file, an explicit key file,
or STRONGROOM_MASTER_KEY, and the clear errors when none of them can be used."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import stat
import sys
from pathlib import Path

import asyncpg
import pytest

from helpers_settings import PG_URL
from strongroom import (
    ConfigurationError,
    InsecureKeyFileError,
    SecretsManager,
    Settings,
    Strongroom,
)
from strongroom.core.keyfile import create_key_file, read_key_file

_KEY_ENV = ("STRONGROOM_MASTER_KEY", "STRONGROOM_MASTER_KEY_FILE", "DATABASE_URL")


@pytest.fixture(autouse=True)
def _no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (*_KEY_ENV, "STRONGROOM_BACKEND", "AZURE_KEY_VAULT_URL", "STRONGROOM_HOME"):
        monkeypatch.delenv(var, raising=False)


def embedded(home: Path, **extra: object) -> Settings:
    return Settings(STRONGROOM_BACKEND="sqlite", STRONGROOM_HOME=home, **extra)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _entries(path: Path) -> list[Path]:
    return list(path.iterdir())


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _write_key_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="ascii")
    path.chmod(mode)
    return path


# -- the embedded profile's own key file ---------------------------------------------------------


async def test_embedded_profile_creates_an_owner_only_key_file_and_reuses_it(
    tmp_path: Path,
) -> None:
    settings = embedded(tmp_path)
    key_file = settings.default_key_file
    assert not key_file.exists()

    async with await Strongroom.open(settings) as app:
        await SecretsManager(app).create_secret("keyfile-db", "s3cret-value")

    assert key_file.is_file()
    assert _mode(key_file) == 0o600
    text = key_file.read_text(encoding="ascii")
    assert len(base64.b64decode(text.strip(), validate=True)) == 32

    async with await Strongroom.open(embedded(tmp_path)) as app:
        assert await SecretsManager(app).get_secret("keyfile-db") == "s3cret-value"
    assert key_file.read_text(encoding="ascii") == text  # reused, never rewritten
    assert _mode(key_file) == 0o600


async def test_lost_key_file_of_an_existing_store_is_reported_not_replaced(
    tmp_path: Path,
) -> None:
    settings = embedded(tmp_path)
    async with await Strongroom.open(settings) as app:
        await SecretsManager(app).create_secret("keyfile-lost", "s3cret-value")
    settings.default_key_file.unlink()

    with pytest.raises(ConfigurationError, match="master key file") as caught:
        await Strongroom.open(embedded(tmp_path))
    assert "exists" in str(caught.value)
    assert not settings.default_key_file.exists()  # no stray new key that opens nothing


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o602])
async def test_key_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    async with await Strongroom.open(embedded(tmp_path)) as app:
        await SecretsManager(app).create_secret("keyfile-db", "s3cret-value")
    key_file = embedded(tmp_path).default_key_file
    text = key_file.read_text(encoding="ascii")
    key_file.chmod(mode)

    with pytest.raises(InsecureKeyFileError) as caught:
        await Strongroom.open(embedded(tmp_path))
    message = str(caught.value)
    assert str(key_file) in message
    assert "chmod 600" in message
    assert text.strip() not in message
    assert key_file.read_text(encoding="ascii") == text  # refused, not replaced
    assert _mode(key_file) == mode  # and not silently "fixed"

    key_file.chmod(0o600)
    async with await Strongroom.open(embedded(tmp_path)) as app:
        assert await SecretsManager(app).get_secret("keyfile-db") == "s3cret-value"


async def test_explicit_key_file_is_refused_when_open_to_others(tmp_path: Path) -> None:
    key_file = _write_key_file(tmp_path / "elsewhere.key", _b64(secrets.token_bytes(32)), 0o604)
    with pytest.raises(InsecureKeyFileError):
        await Strongroom.open(embedded(tmp_path / "home", STRONGROOM_MASTER_KEY_FILE=key_file))
    assert not (tmp_path / "home" / "strongroom.db").exists()


# -- an explicit key file or key -----------------------------------------------------------------


async def test_explicit_key_file_is_used_and_no_default_file_is_made(tmp_path: Path) -> None:
    key_file = _write_key_file(tmp_path / "elsewhere.key", _b64(secrets.token_bytes(32)) + "\n")
    home = tmp_path / "home"
    async with await Strongroom.open(embedded(home, STRONGROOM_MASTER_KEY_FILE=key_file)) as app:
        await SecretsManager(app).create_secret("keyfile-db", "s3cret-value")
    assert not (home / "master.key").exists()

    async with await Strongroom.open(embedded(home, STRONGROOM_MASTER_KEY_FILE=key_file)) as app:
        assert await SecretsManager(app).get_secret("keyfile-db") == "s3cret-value"


async def test_missing_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "master.key"
    home = tmp_path / "home"
    with pytest.raises(ConfigurationError) as caught:
        await Strongroom.open(embedded(home, STRONGROOM_MASTER_KEY_FILE=missing))
    assert str(missing) in str(caught.value)
    assert not missing.exists()  # an explicit path is never created on the fly
    assert not (home / "master.key").exists()
    assert not (home / "strongroom.db").exists()


_BAD_KEYS = {
    "not-base64": "this is not base64!",
    "too-short": _b64(secrets.token_bytes(16)),
    "too-long": _b64(secrets.token_bytes(48)),
    "empty": "",
}


@pytest.mark.parametrize("bad", sorted(_BAD_KEYS))
async def test_bad_master_key_in_environment_is_a_configuration_error(
    tmp_path: Path, bad: str
) -> None:
    text = _BAD_KEYS[bad]
    with pytest.raises(ConfigurationError) as caught:
        await Strongroom.open(embedded(tmp_path, STRONGROOM_MASTER_KEY=text))
    if text:
        assert text not in str(caught.value)
    assert not (tmp_path / "strongroom.db").exists()  # nothing was written
    assert not (tmp_path / "master.key").exists()


@pytest.mark.parametrize("bad", sorted(_BAD_KEYS))
async def test_bad_key_file_content_is_a_configuration_error(tmp_path: Path, bad: str) -> None:
    key_file = _write_key_file(tmp_path / "bad.key", _BAD_KEYS[bad])
    home = tmp_path / "home"
    with pytest.raises(ConfigurationError):
        await Strongroom.open(embedded(home, STRONGROOM_MASTER_KEY_FILE=key_file))
    assert not (home / "strongroom.db").exists()


async def test_bad_default_key_file_is_not_replaced(tmp_path: Path) -> None:
    key_file = _write_key_file(tmp_path / "master.key", "garbage")
    with pytest.raises(ConfigurationError):
        await Strongroom.open(embedded(tmp_path))
    assert key_file.read_text(encoding="ascii") == "garbage"


# -- the cluster profile never makes up a key ----------------------------------------------------


async def test_postgres_profile_without_a_key_is_a_configuration_error(
    tmp_path: Path, pg_schema: str
) -> None:
    settings = Settings(
        STRONGROOM_BACKEND="postgres",
        STRONGROOM_HOME=tmp_path,
        DATABASE_URL=PG_URL,
        STRONGROOM_PG_SCHEMA=pg_schema,
    )
    with pytest.raises(ConfigurationError) as caught:
        await Strongroom.open(settings)
    assert "STRONGROOM_MASTER_KEY" in str(caught.value)
    assert not settings.default_key_file.exists()
    assert _entries(tmp_path) == []
    conn = await asyncpg.connect(PG_URL)
    try:
        exists = await conn.fetchval(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1", pg_schema
        )
    finally:
        await conn.close()
    assert exists is None  # refused before touching the database


async def test_postgres_profile_chosen_by_database_url_without_a_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_schema: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", PG_URL)
    settings = Settings(STRONGROOM_HOME=tmp_path, STRONGROOM_PG_SCHEMA=pg_schema)
    assert settings.backend.value == "postgres"
    with pytest.raises(ConfigurationError):
        await Strongroom.open(settings)
    assert not settings.default_key_file.exists()


def test_key_file_mode_does_not_depend_on_umask(tmp_path: Path) -> None:
    """A permissive umask must not widen the new key file."""
    old = os.umask(0o000)
    try:
        create_key_file(tmp_path / "master.key")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "master.key") == 0o600


def test_a_new_key_files_own_directory_is_owner_only(tmp_path: Path) -> None:
    """The directory that holds the key (made with its parents if missing) is 0700; parents
    above it get the umask's mode, as mkdir gives them."""
    old = os.umask(0o022)
    try:
        create_key_file(tmp_path / "a" / "b" / "master.key")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a" / "b") == 0o700
    assert [p.name for p in _entries(tmp_path / "a" / "b")] == ["master.key"]  # no temp left


def test_creating_an_existing_key_file_reads_it_instead(tmp_path: Path) -> None:
    first = create_key_file(tmp_path / "master.key")
    again = create_key_file(tmp_path / "master.key")
    assert again.check_value() == first.check_value()
    assert _entries(tmp_path) == [tmp_path / "master.key"]


def test_a_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    """Whoever can replace the link could point the service at a key of their choosing."""
    real = _write_key_file(tmp_path / "real.key", _b64(secrets.token_bytes(32)))
    link = tmp_path / "master.key"
    link.symlink_to(real)
    with pytest.raises(ConfigurationError, match="cannot open master key file"):
        read_key_file(link)


def test_a_key_file_that_is_not_ascii_is_a_configuration_error(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    key_file.write_bytes("clé-secrète\n".encode())
    key_file.chmod(0o600)
    with pytest.raises(ConfigurationError, match="not base64") as caught:
        read_key_file(key_file)
    assert "secr" not in str(caught.value)


# -- first use by several processes at once ------------------------------------------------------

# Blocks on a pipe shared by every child until the parent closes its end, which wakes them all
# at the same moment; then opens the embedded profile on a fresh home and writes one secret.
_FIRST_USE_CHILD = """
import asyncio, os, sys
from strongroom import SecretsManager, Settings, Strongroom

async def main(home, index):
    settings = Settings(STRONGROOM_BACKEND="sqlite", STRONGROOM_HOME=home, LOG_LEVEL="ERROR")
    try:
        async with await Strongroom.open(settings) as app:
            await SecretsManager(app).create_secret(f"first-use-{index}", f"value-{index}")
    except BaseException as exc:
        print("error", type(exc).__name__, exc, flush=True)
    else:
        print("ok", flush=True)

print("ready", flush=True)
os.read(int(sys.argv[3]), 1)
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""
FIRST_USE_PROCESSES = 4
FIRST_USE_ROUNDS = 5  # the race is lost in most rounds, not all: five make a miss unlikely


async def _start_together(home: Path, count: int) -> list[str]:
    """What each of ``count`` children, released at once, reports."""
    env = {k: v for k, v in os.environ.items() if k not in _KEY_ENV}
    gate_read, gate_write = os.pipe()
    procs: list[asyncio.subprocess.Process] = []
    try:
        for i in range(count):
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-c", _FIRST_USE_CHILD, str(home), str(i), str(gate_read),
                    stdout=asyncio.subprocess.PIPE, env=env, pass_fds=(gate_read,),
                )
            )  # fmt: skip
        os.close(gate_read)
        gate_read = -1
        for proc in procs:
            assert proc.stdout is not None
            assert await asyncio.wait_for(proc.stdout.readline(), timeout=30) == b"ready\n"
        os.close(gate_write)  # every child's read returns now
        gate_write = -1
        return [
            (await asyncio.wait_for(proc.communicate(), timeout=30))[0].decode().strip()
            for proc in procs
        ]
    finally:
        for fd in (gate_read, gate_write):
            if fd >= 0:
                os.close(fd)
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.mark.slow
async def test_processes_starting_together_share_one_new_key_file(tmp_path: Path) -> None:
    """Workers of one service that start at once on a fresh home must all open the store: the
    key file is made by one of them and read by the others; none of them fails."""
    for attempt in range(FIRST_USE_ROUNDS):
        home = tmp_path / f"home-{attempt}"
        outcomes = await _start_together(home, FIRST_USE_PROCESSES)
        assert outcomes == ["ok"] * FIRST_USE_PROCESSES, f"round {attempt}"
        assert _mode(home / "master.key") == 0o600
        async with await Strongroom.open(embedded(home)) as app:
            manager = SecretsManager(app)
            for i in range(FIRST_USE_PROCESSES):
                assert await manager.get_secret(f"first-use-{i}") == f"value-{i}"
