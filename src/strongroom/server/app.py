"""The ASGI application: routes, the guard in front of them, and the service's lifetime.

``create_app(strongroom)`` serves an open wiring (tests, embedding); ``create_app()`` opens one
from the environment at start-up and closes it at shutdown. Either way the rotation scheduler
runs while the app does (leases keep several workers or replicas from rotating twice).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from strongroom import __version__
from strongroom.core.config import Settings
from strongroom.core.logging import configure_logging, get_logger, is_configured
from strongroom.core.ratelimit import RateLimiter
from strongroom.server.context import Services
from strongroom.server.errors import install_error_handlers
from strongroom.server.fastpath import FastPath, StrongroomAPI, guarded_read
from strongroom.server.guard import Guard, GuardConfig
from strongroom.server.protocol import ConnectionLimits
from strongroom.server.routes import (
    access,
    audit,
    edge,
    events,
    feed,
    keyvault,
    keyvault_keys,
    login,
    ops,
    reports,
    revocation,
    rotation,
    rotation_workers,
    secrets,
    sys,
)
from strongroom.server.schemas import ErrorOut
from strongroom.server.seal_gate import SealGate
from strongroom.server.ui import install_console
from strongroom.services.custody.unsealer import Custody
from strongroom.services.wiring import Strongroom

__all__ = ["create_app"]

log = get_logger("strongroom.server")

#: Failed authentications allowed per client address: a burst of 20, then 2 per second.
FAILED_AUTH_RATE, FAILED_AUTH_BURST = 2.0, 20

_ERRORS = {
    400: {"model": ErrorOut, "description": "bad input (nothing changed)"},
    401: {"model": ErrorOut, "description": "no valid bearer token"},
    403: {"model": ErrorOut, "description": "outside the caller's policies, or not readable now"},
    404: {"model": ErrorOut, "description": "no such secret, version or object"},
    409: {"model": ErrorOut, "description": "conflicts with the current state"},
    413: {"model": ErrorOut, "description": "request body too large"},
    429: {"model": ErrorOut, "description": "rate limited; see Retry-After"},
    503: {"model": ErrorOut, "description": "a store or the audit log is unavailable, or sealed"},
}


def create_app(
    strongroom: Strongroom | None = None,
    *,
    settings: Settings | None = None,
    run_scheduler: bool = True,
) -> StrongroomAPI:
    settings = settings or (strongroom.settings if strongroom is not None else Settings())

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        owned = strongroom is None
        if owned and not is_configured():
            # A worker process of `strongroom serve`: a service logs its requests (INFO).
            configure_logging(settings.log_level or "INFO", debug=settings.debug)
        gate: SealGate = api.state.gate
        if owned and settings.seal == "shamir":
            # Sealed start: nothing opens until a quorum of key holders unseals the service.
            gate.custody = await Custody.load(settings)
            log.warning("service sealed", threshold=gate.custody.record.threshold)
        elif owned and settings.seal in ("pkcs11", "azurekeyvault"):
            await gate.auto_unseal()  # sealed, with the reason, while the key cannot unwrap
        else:
            wiring = strongroom if strongroom is not None else await Strongroom.open(settings)
            await gate.start(wiring, owned=owned)
        # Everything built so far lives as long as the process: keep it out of the collector's
        # full passes, which otherwise stall every request in flight for tens of milliseconds.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await gate.stop()
            if gate.custody is not None:
                gate.custody.sealed()
            log.info("service stopped")

    api = StrongroomAPI(
        title="strongroom",
        version=__version__,
        description=(
            "Secrets management: encrypted storage, rotation, audit and emergency revocation. "
            "Every call needs `Authorization: Bearer <token>` (except /healthz, /readyz and this "
            "document); every call is audited with the token's identity, the client address "
            "and the user agent. The Key Vault-compatible API (/secrets, /deletedsecrets, /keys) "
            "follows Azure Key Vault's own specification and is not listed here."
        ),
        lifespan=lifespan,
        # No OpenTelemetry hooks: they cost a provider lookup on every request, and the service
        # exports its own metrics at /metrics.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,
        redoc_url=None,
        responses=_ERRORS,  # type: ignore[arg-type]
    )
    api.state.gate = SealGate(api, settings, run_scheduler=run_scheduler)
    if strongroom is not None:
        api.state.services = Services.over(strongroom)
    proxies = GuardConfig.parse_proxies(settings.trusted_proxies)
    # Read by the HTTP protocol of each connection (header, body and keep-alive timeouts, and
    # the per-address cap, which trusted proxies are exempt from).
    api.state.connection_limits = ConnectionLimits.from_settings(settings, proxies)
    install_error_handlers(api)
    # Matched in this order: probes and the busiest routes first.
    for router in (ops.router, secrets.router, keyvault.router, keyvault_keys.router,
                   rotation_workers.router,
                   rotation.router, audit.router,
                   revocation.router, login.router, access.router, access.keys_router,
                   sys.router, events.router, feed.router, edge.router,
                   reports.router):  # fmt: skip
        api.include_router(router)
    install_console(api)
    api.add_middleware(FastPath)  # inside the guard: runs only for authenticated callers
    guard: dict[str, Any] = {
        "config": GuardConfig(
            max_body_bytes=settings.max_body_bytes,
            trusted_proxies=proxies,
            kv_authority=settings.kv_authority,
            kv_resource=settings.kv_resource,
            metrics_public=settings.metrics_public,
        ),
        # Shared by both guards below: one rate limit per identity and per address.
        "limiter": RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        "failures": RateLimiter(FAILED_AUTH_RATE, FAILED_AUTH_BURST),
    }
    api.add_middleware(Guard, **guard)
    if not settings.cors_origins:  # CORS must see every answer: then the reads stay inside
        api.hot_reads = Guard(guarded_read, **guard)
    if settings.cors_origins:
        api.add_middleware(
            CORSMiddleware,
            allow_origins=[o.strip() for o in settings.cors_origins.split(",") if o.strip()],
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return api
