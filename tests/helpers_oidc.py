"""A real local OIDC issuer for tests: discovery and JWKS over HTTPS (a trustme CA), signing
keys that rotate, and switches that make it fail (down, slow, garbage).

``issuer.token(sub=..., **claims)`` signs a JWT with the current key; ``issuer.rotate()`` makes
a new key current and drops the oldest from the published set.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import trustme
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from helpers_serve import free_socket

AUDIENCE = "strongroom"
SUB = "system:serviceaccount:dispatch:api"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


def new_key(alg: str = "RS256") -> SigningKey:
    private: Any
    if alg.startswith("ES"):
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(kid=secrets.token_hex(6), alg=alg, private=private)


@dataclass
class Issuer:
    url: str
    ca_path: Path
    keys: list[SigningKey] = field(default_factory=list)
    mode: str = "up"  # up | down | slow | garbage
    jwks_requests: int = 0

    @property
    def current(self) -> SigningKey:
        return self.keys[-1]

    def rotate(self, alg: str = "RS256", *, keep: int = 2) -> SigningKey:
        self.keys.append(new_key(alg))
        del self.keys[:-keep]
        return self.current

    def claims(self, sub: str = SUB, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": self.url, "aud": AUDIENCE, "sub": sub, "iat": now, "nbf": now,
                "exp": now + 300, **extra}  # fmt: skip

    def token(
        self, sub: str = SUB, *, key: SigningKey | None = None,
        headers: dict[str, Any] | None = None, **extra: Any,
    ) -> str:  # fmt: skip
        key = key or self.current
        return jwt.encode(self.claims(sub, **extra), key.private, algorithm=key.alg,
                          headers={"kid": key.kid, **(headers or {})})  # fmt: skip

    def app(self) -> Starlette:
        async def discovery(_: Request) -> Response:
            return JSONResponse({"issuer": self.url, "jwks_uri": f"{self.url}/keys"})

        async def keys(_: Request) -> Response:
            self.jwks_requests += 1
            if self.mode == "down":
                return Response("unavailable", status_code=503)
            if self.mode == "garbage":
                return Response(b"\x00not json{", media_type="application/json")
            if self.mode == "slow":
                await asyncio.sleep(2)
            return JSONResponse({"keys": [k.public_jwk() for k in self.keys]})

        return Starlette(routes=[
            Route("/.well-known/openid-configuration", discovery), Route("/keys", keys),
        ])  # fmt: skip


@asynccontextmanager
async def run_issuer(folder: Path) -> AsyncIterator[Issuer]:
    """An issuer on a free port of 127.0.0.1 over HTTPS until the block ends."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path, ca_path = folder / "issuer.pem", folder / "issuer.key", folder / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    ca.cert_pem.write_to_path(ca_path)
    sock = free_socket()
    issuer = Issuer(url=f"https://127.0.0.1:{sock.getsockname()[1]}", ca_path=ca_path)
    issuer.keys.append(new_key("RS256"))
    config = uvicorn.Config(issuer.app(), log_level="warning", lifespan="off",
                            ssl_certfile=str(cert_path), ssl_keyfile=str(key_path))  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    try:
        yield issuer
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()
