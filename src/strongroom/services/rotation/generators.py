"""Built-in value generators for rotation: every byte from ``secrets`` (the OS CSPRNG)."""

from __future__ import annotations

import base64
import inspect
import secrets
import string
from collections.abc import Callable
from typing import Any

from strongroom.core.errors import ValidationError

__all__ = ["GENERATORS", "api_key", "generate", "jwt_secret", "password", "raw_key"]

_DEFAULT_ALPHABET = string.ascii_letters + string.digits + "-_.~!@#%^*+="


def _kind(value: object) -> str:
    return {
        str: "text",
        bool: "true/false",
        float: "a fraction",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _whole(option: str, value: object, low: int, high: int) -> int:
    """An option that must be a whole number: a type error says so, apart from the range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"option {option!r} must be a whole number, not {_kind(value)}")
    if not low <= value <= high:
        raise ValidationError(f"option {option!r} must be between {low} and {high}")
    return value


def _text(option: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"option {option!r} must be text, not {_kind(value)}")
    return value


def password(*, length: int = 32, alphabet: str = _DEFAULT_ALPHABET) -> str:
    """A random password; at least 16 characters from an alphabet of at least 10 symbols."""
    _whole("length", length, 16, 1024)
    if len(set(_text("alphabet", alphabet))) < 10 or "," in alphabet:
        # "," is refused because Key Vault clients cannot carry it in some headers.
        raise ValidationError("alphabet must have at least 10 distinct characters and no ','")
    symbols = "".join(sorted(set(alphabet)))
    return "".join(secrets.choice(symbols) for _ in range(length))


def api_key(*, prefix: str = "sk", bits: int = 256) -> str:
    """``<prefix>_`` and ``bits`` random bits in URL-safe base64 (256 bits by default)."""
    if _whole("bits", bits, 128, 8192) % 8:
        raise ValidationError("option 'bits' must be a multiple of 8")
    if not _text("prefix", prefix).replace("-", "").isalnum() or len(prefix) > 32:
        raise ValidationError("prefix must be 1-32 letters, digits or '-'")
    return f"{prefix}_{secrets.token_urlsafe(bits // 8)}"


def jwt_secret(*, bytes_: int = 64) -> str:
    """An HMAC signing key for JWTs: 512 random bits, base64url without padding."""
    _whole("bytes", bytes_, 32, 1024)
    return base64.urlsafe_b64encode(secrets.token_bytes(bytes_)).rstrip(b"=").decode("ascii")


def raw_key(*, bytes_: int = 32, encoding: str = "base64") -> str:
    """A raw key (256 bits by default) as hex or base64 text."""
    data = secrets.token_bytes(_whole("bytes", bytes_, 16, 1024))
    if encoding == "hex":
        return data.hex()
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    raise ValidationError("encoding must be 'hex' or 'base64'")


GENERATORS: dict[str, Callable[..., str]] = {
    "password": password,
    "api_key": api_key,
    "jwt_secret": jwt_secret,
    "raw_key": raw_key,
}


def _options(options: dict[str, Any]) -> dict[str, Any]:
    # "bytes" reads better in a stored configuration than the keyword "bytes_".
    return {("bytes_" if key == "bytes" else key): value for key, value in options.items()}


def generate(name: str, options: dict[str, Any] | None = None) -> str:
    try:
        generator = GENERATORS[name]
    except KeyError:
        raise ValidationError(
            f"unknown generator {name!r}; built in: {', '.join(sorted(GENERATORS))}"
        ) from None
    given = _options(options or {})
    known = inspect.signature(generator).parameters
    unknown = sorted(key.rstrip("_") for key in given if key not in known)
    if unknown:
        names = ", ".join(sorted(p.rstrip("_") for p in known))
        raise ValidationError(
            f"generator {name!r} has no option {unknown[0]!r} (its options: {names})"
        )
    return generator(**given)


def check_generator(name: str, options: dict[str, Any] | None) -> None:
    """Fail at registration, not at 3 a.m.: run the generator once and drop the value."""
    generate(name, options)
