"""A SoftHSM2 token the tests initialise themselves (Debian package ``softhsm2``).

SoftHSM2 reads ``SOFTHSM2_CONF`` once, when its module is first loaded into a process, so a
test process has one token directory: made here on first use, in a temporary folder, with one
token. Tests keep apart by key label.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from pydantic import SecretStr

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN_LABEL = "strongroom-tests"
USER_PIN = "4821-test"
_made: Path | None = None


def softhsm_token() -> Path:
    """The token's folder (made and initialised once per process); fails when SoftHSM2 is
    missing (the tests need it: .ci/run installs it)."""
    global _made  # noqa: PLW0603
    if _made is not None:
        return _made
    assert MODULE.exists(), f"SoftHSM2 is not installed ({MODULE}): apt-get install softhsm2"
    folder = Path(tempfile.mkdtemp(prefix="softhsm-"))
    (folder / "tokens").mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL,
         "--pin", USER_PIN, "--so-pin", secrets.token_hex(8)],
        check=True, capture_output=True, env=os.environ.copy(),
    )  # fmt: skip
    atexit.register(shutil.rmtree, folder, True)
    _made = folder
    return folder


def hsm_changes(key_label: str | None = None, **overrides: object) -> dict[str, object]:
    """Settings fields for the test token (a fresh key label unless one is given)."""
    softhsm_token()
    changes: dict[str, object] = {
        "seal": "pkcs11",
        "pkcs11_library": MODULE,
        "pkcs11_token_label": TOKEN_LABEL,
        "pkcs11_pin": SecretStr(USER_PIN),
        "pkcs11_key_label": key_label or f"wrap-{secrets.token_hex(4)}",
    }
    changes.update(overrides)
    return changes
