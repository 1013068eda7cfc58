"""Built-in value generators for rotation: every byte from ``secrets`` (the OS CSPRNG)."""

from __future__ import annotations

import base64
import secrets
import string
from collections.abc import Callable
from typing import Any

from strongroom.core.errors import ValidationError

__all__ = ["GENERATORS", "api_key", "generate", "jwt_secret", "password", "raw_key"]

_DEFAULT_ALPHABET = string.ascii_letters + string.digits + "-_.~!@#%^*+="


def password(*, length: int = 32, alphabet: str = _DEFAULT_ALPHABET) -> str:
    """A random password; at least 16 characters from an alphabet of at least 10 symbols."""
    if not isinstance(length, int) or not 16 <= length <= 1024:
        raise ValidationError("password length must be 16-1024")
    if not isinstance(alphabet, str) or len(set(alphabet)) < 10 or "," in alphabet:
        # "," is refused because Key Vault clients cannot carry it in some headers.
        raise ValidationError("alphabet must have at least 10 distinct characters and no ','")
    symbols = "".join(sorted(set(alphabet)))
    return "".join(secrets.choice(symbols) for _ in range(length))


def api_key(*, prefix: str = "sk", bits: int = 256) -> str:
    """``<prefix>_`` and ``bits`` random bits in URL-safe base64 (256 bits by default)."""
    if not isinstance(bits, int) or bits < 128 or bits % 8:
        raise ValidationError("bits must be a multiple of 8, at least 128")
    if not isinstance(prefix, str) or not prefix.replace("-", "").isalnum() or len(prefix) > 32:
        raise ValidationError("prefix must be 1-32 letters, digits or '-'")
    return f"{prefix}_{secrets.token_urlsafe(bits // 8)}"


def jwt_secret(*, bytes_: int = 64) -> str:
    """An HMAC signing key for JWTs: 512 random bits, base64url without padding."""
    if not isinstance(bytes_, int) or bytes_ < 32:
        raise ValidationError("a JWT secret needs at least 32 bytes")
    return base64.urlsafe_b64encode(secrets.token_bytes(bytes_)).rstrip(b"=").decode("ascii")


def raw_key(*, bytes_: int = 32, encoding: str = "base64") -> str:
    """A raw key (256 bits by default) as hex or base64 text."""
    if not isinstance(bytes_, int) or not 16 <= bytes_ <= 1024:
        raise ValidationError("a raw key is 16-1024 bytes")
    data = secrets.token_bytes(bytes_)
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
    try:
        return generator(**_options(options or {}))
    except TypeError:
        raise ValidationError(f"invalid options for generator {name!r}") from None


def check_generator(name: str, options: dict[str, Any] | None) -> None:
    """Fail at registration, not at 3 a.m.: run the generator once and drop the value."""
    generate(name, options)
