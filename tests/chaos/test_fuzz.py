"""schemathesis over ``/openapi.json`` of the real ``strongroom serve`` with a fixed seed, on
SQLite and PostgreSQL: no 5xx answer, and no traceback in the server's log."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FULL, Figures, size
from harness import Service, admin_token, drop_schema_of, service_env

SEED = "20261204"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["postgres", "sqlite"] if FULL else ["postgres"])
async def test_fuzzing_finds_no_server_error(
    backend: str, tmp_path: Path, figures: Figures, postgres_available: None
) -> None:
    examples = size(2, 60)
    env = service_env(backend, tmp_path / "home")
    token = await admin_token(env)
    service = Service(env, log_dir=tmp_path)
    try:
        await service.start()
        command = [
            str(Path(sys.executable).with_name("schemathesis")), "run",
            f"{service.url}/openapi.json",
            "--header", f"Authorization: Bearer {token}",
            "--checks", "not_a_server_error",
            # Its own token's revocation would stop the run from testing anything else.
            "--exclude-operation-id", "revoke_token_v1_auth_tokens__token_id__delete",
            "--max-examples", str(examples),
            "--seed", SEED,
            "--workers", "1",
            "--no-color",
        ]  # fmt: skip
        run = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=850, check=False
        )
    finally:
        service.stop()
        await drop_schema_of(env)
    log = service.log()
    cases = re.search(r"(\d+) generated", run.stdout)
    scenario = "fuzzing /openapi.json (schemathesis, fixed seed)"
    figures.add(scenario, backend, "test cases / 5xx answers",
                f"{cases.group(1) if cases else '?'} / {0 if run.returncode == 0 else 'some'}",
                "0 5xx", run.returncode == 0)  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Traceback" not in log, log[-3000:]
