"""A real strongroom server on a free localhost port, for tests that talk HTTP(S) to it.

``serve(app)`` runs uvicorn in the test's event loop over a real socket (optionally TLS with a
test CA from trustme); ``Served.token_for`` issues a token whose identity holds a fresh policy
with the given grants.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trustme
import uvicorn

from helpers_settings import make_settings
from strongroom import Settings, Strongroom
from strongroom.cli.serve import client_certificates
from strongroom.core.policy import Policy
from strongroom.server.app import create_app
from strongroom.server.protocol import uvicorn_options


@dataclass
class Served:
    app: Strongroom
    base_url: str
    admin_token: str
    port: int
    ca: trustme.CA | None = None
    ca_path: Path | None = None
    server: uvicorn.Server | None = field(default=None, repr=False)

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        verify: Any = True
        if self.ca is not None:
            verify = ssl.create_default_context()
            self.ca.configure_trust(verify)
        return httpx.AsyncClient(
            base_url=self.base_url, headers=headers, verify=verify, timeout=30, **kwargs
        )

    def admin(self, **kwargs: Any) -> httpx.AsyncClient:
        return self.client(self.admin_token, **kwargs)

    async def token_for(self, identity: str, *grants: str) -> str:
        """A token for ``identity``, which holds one new policy made of ``grants``
        (``"read,list:app-*"``); no grants: an identity with no policy at all."""
        policies = []
        if grants:
            name = f"p-{secrets.token_hex(4)}"
            await self.app.access.put_policy(Policy.build(name, list(grants)))
            policies.append(name)
        issued = await self.app.access.create_token(identity, policies=policies)
        return issued.token


def free_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP
    # (without it every answer waits ~40 ms for delayed ACKs).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


@asynccontextmanager
async def serve(
    app: Strongroom,
    *,
    tls_dir: Path | None = None,
    hostnames: tuple[str, ...] = ("localhost", "127.0.0.1"),
    url_host: str = "127.0.0.1",
    run_scheduler: bool = False,
    client_ca: Path | None = None,
    api: Any = None,
    port: int = 0,
    ca: trustme.CA | None = None,
) -> AsyncIterator[Served]:
    """Serve ``app`` until the block ends (TLS with a fresh test CA when ``tls_dir`` is given).
    ``api`` serves another ASGI app over ``app`` (an edge's); ``port`` and ``ca`` start a
    server again where a stopped one was, with the same CA (its clients keep trusting it)."""
    sock = free_socket(port=port)
    port = sock.getsockname()[1]
    ca_path = None
    options: dict[str, Any] = {}
    if tls_dir is not None:
        ca = ca or trustme.CA()
        cert = ca.issue_cert(*hostnames)
        cert_path, key_path, ca_path = tls_dir / "cert.pem", tls_dir / "key.pem", tls_dir / "ca.pem"
        cert.cert_chain_pems[0].write_to_path(cert_path)
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(cert_path, append=True)
        cert.private_key_pem.write_to_path(key_path)
        ca.cert_pem.write_to_path(ca_path)
        options = {"ssl_certfile": str(cert_path), "ssl_keyfile": str(key_path),
                   **client_certificates(client_ca)}  # fmt: skip
    api = api if api is not None else create_app(app, run_scheduler=run_scheduler)
    config = uvicorn.Config(
        api,
        log_level="warning",
        lifespan="on",
        **uvicorn_options(app.settings),  # as `strongroom serve`: its protocol and timeouts
        **options,
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()  # raises what stopped it
    admin = await app.access.create_token("test-admin", policies=["admin"])
    scheme = "https" if tls_dir is not None else "http"
    try:
        yield Served(
            app=app,
            base_url=f"{scheme}://{url_host}:{port}",
            admin_token=admin.token,
            port=port,
            ca=ca,
            ca_path=ca_path,
            server=server,
        )
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


def server_settings(
    backend: str, home: Path, schema: str | None = None, **changes: Any
) -> Settings:
    """Test settings for a server: the store's, plus any field changed by name."""
    base = make_settings(backend, home, schema=schema)
    return base.model_copy(update=changes) if changes else base
