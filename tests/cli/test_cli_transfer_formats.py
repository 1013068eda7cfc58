"""The import/export formats as pure functions: .env parsing, JSON, the encrypted envelope."""

from __future__ import annotations

import base64
import json
import random
import string
from datetime import UTC, datetime

import pytest

from strongroom.cli import transfer
from strongroom.core.errors import DecryptionError, ValidationError


def _values(items: list[transfer.Item]) -> dict[str, str]:
    return {i.name: i.value for i in items}


def test_env_syntax() -> None:
    text = (
        "\ufeff# comment\n"
        "\n"
        "export DB_USER=fleet\n"
        "  PLAIN = spaced value   # comment\n"
        "HASH=a#b\n"
        "SINGLE='lit $HOME \\n # kept'\n"
        'DOUBLE="tab\\there \\"q\\" back\\\\slash"  # comment\n'
        'MULTI="one\n'
        'two"\n'
        "CRLF=value\r\n"
        "dotted.key=x\n"
    )
    items = transfer.parse_env(text)
    assert _values(items) == {
        "DB-USER": "fleet",
        "PLAIN": "spaced value",
        "HASH": "a#b",
        "SINGLE": "lit $HOME \\n # kept",
        "DOUBLE": 'tab\there "q" back\\slash',
        "MULTI": "one\ntwo",
        "CRLF": "value",
        "dotted-key": "x",
    }
    assert {i.source: i.name for i in items if i.source} == {
        "DB_USER": "DB-USER",
        "dotted.key": "dotted-key",
    }
    assert [i.line for i in items] == [3, 4, 5, 6, 7, 8, 10, 11]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NO_EQUALS\n", "line 1: expected KEY=VALUE"),
        ("A=1\nB='open\n", "line 2: 'B' has an unclosed quote"),
        ("A='x' trailing\n", "unexpected text"),
        ("EMPTY=\n", "'EMPTY' has an empty value"),
        ("A_B=1\nA-B=2\n", "same secret name"),
        ("a=1\nA=2\n", "same secret name"),
        (f"{'K' * 128}=1\n", "not a valid secret name"),
    ],
)
def test_env_problems_are_reported_by_line_without_values(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        transfer.parse_env(text)
    assert message in str(caught.value)


def test_many_problems_make_one_line() -> None:
    with pytest.raises(ValidationError) as caught:
        transfer.parse_env("".join(f"bad line {n}\n" for n in range(12)))
    assert "12 problems" in str(caught.value)
    assert "(and 7 more)" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_env_render_parse_round_trip_with_awkward_values() -> None:
    rng = random.Random(7)  # noqa: S311 (reproducible test data, not keys)
    alphabet = string.printable + "é✓\u2028"
    items = [
        transfer.Item(name=f"k-{n}", value="".join(rng.choices(alphabet, k=rng.randint(1, 40))))
        for n in range(300)
    ]
    items.append(transfer.Item(name="quotes", value='it\'s "both" \\ $x'))
    parsed = transfer.parse_env(transfer.render_env(items))
    assert _values(parsed) == {i.name: i.value for i in items}


def test_json_map_and_document_detection() -> None:
    kind, data = transfer.detect('{"API_KEY": "v", "cfg": {"a": 1}}')
    assert kind == "json"
    items = transfer.parse_input(kind, "", data)
    assert [(i.name, i.value, i.content_type) for i in items] == [
        ("API-KEY", "v", None),
        ("cfg", '{"a":1}', "application/json"),
    ]
    with pytest.raises(ValidationError, match="must be a string"):
        transfer.parse_json_map({"n": 5})
    assert transfer.detect("A=1\n")[0] == "env"
    with pytest.raises(ValidationError, match="not valid JSON"):
        transfer.detect("{nope")


def test_document_round_trip_keeps_properties() -> None:
    moment = datetime(2027, 1, 1, tzinfo=UTC)
    item = transfer.Item(
        name="db",
        value="pw",
        secret_type="database_credential",
        content_type="text/plain",
        tags={"env": "prod"},
        expires_at=moment,
    )
    text = transfer.dumps_document([item], exported_at=moment)
    kind, data = transfer.detect(text)
    assert kind == "document"
    assert transfer.from_document(data) == [item]
    assert "pw" not in repr(item)  # values stay out of reprs


STRONG = "kettle orbit violet ledger"


def test_encrypted_export_round_trip_and_failures() -> None:
    payload = b'{"format": "strongroom-secrets/1", "secrets": []}'
    sealed = transfer.encrypt_export(payload, STRONG)
    kind, envelope = transfer.detect(sealed)
    assert kind == "encrypted"
    assert b"strongroom-secrets" not in base64.b64decode(envelope["ciphertext"])
    assert transfer.decrypt_export(envelope, STRONG) == payload
    with pytest.raises(DecryptionError):
        transfer.decrypt_export(envelope, "wrong")
    # The header is bound to the ciphertext: changing the parameters breaks decryption.
    tampered = json.loads(sealed)
    tampered["cipher_note"] = "x"
    with pytest.raises(DecryptionError):
        transfer.decrypt_export(tampered, STRONG)
    greedy = {**envelope, "kdf": {**envelope["kdf"], "memory_kib": 2**24}}
    with pytest.raises(ValidationError, match="out of range"):
        transfer.decrypt_export(greedy, STRONG)
    with pytest.raises(ValidationError):
        transfer.encrypt_export(payload, "")


@pytest.mark.parametrize(
    "weak", ["x", "pass phrase", "password1234", "strongroom-export", "aaaaaaaaaaaaaaaa"]
)
def test_a_weak_export_passphrase_is_refused(weak: str) -> None:
    """An export is attacked offline: a one-character passphrase (accepted with a warning
    before) and anything a guesser tries early are refused, without repeating it."""
    with pytest.raises(ValidationError) as refused:
        transfer.encrypt_export(b"{}", weak)
    assert weak not in str(refused.value)


def test_exports_cost_an_argon2id_pass_over_64_mib_per_guess() -> None:
    envelope = json.loads(transfer.encrypt_export(b"{}", STRONG))
    kdf = envelope["kdf"]
    assert kdf["name"] == "argon2id"
    assert kdf["memory_kib"] >= 64 * 1024
    assert kdf["iterations"] >= 3


def test_an_export_of_an_earlier_release_still_imports() -> None:
    """Sealed as releases before Argon2id did: scrypt n=2**15, r=8, p=1, a short passphrase."""
    import secrets

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    payload = b'{"format": "strongroom-secrets/1", "secrets": []}'
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    header = {
        "format": "strongroom-export/1",
        "kdf": {"name": "scrypt", "salt": b64(salt), "n": 2**15, "r": 8, "p": 1},
        "cipher": "AES-256-GCM",
        "nonce": b64(nonce),
    }
    key = Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(b"old")
    aad = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    old = {**header, "ciphertext": b64(AESGCM(key).encrypt(nonce, payload, aad))}
    assert transfer.decrypt_export(old, "old") == payload
