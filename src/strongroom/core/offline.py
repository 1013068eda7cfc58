"""The offline bound of an edge replica: how long it may serve while cut off from upstream.

Pure state over an injected monotonic clock, so a wrong wall clock cannot stretch the bound and
tests move time without sleeping. Time offline counts from the last moment the upstream was
heard from (a change or a keep-alive), not from when the loss was noticed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from strongroom.core.errors import (
    ConfigurationError,
    EdgeCredentialRefusedError,
    EdgeOfflineTooLongError,
)
from strongroom.core.models import SecretType, VersionProperties

__all__ = ["EDGE_BOUND_TAG", "OfflineBound", "OfflineLimits"]

#: A tag set on a secret at the centre: its own, shorter offline bound at edges (seconds).
EDGE_BOUND_TAG = "strongroom-edge-max-offline"


class OfflineBound:
    """Online while the change feed is connected and the replica reconciled; otherwise the
    time since the upstream was last heard from must stay within ``max_offline`` seconds.

    ``carried`` is the time already spent offline before this process started (from the wall
    clock of the last sync, read once at start); None means the replica never synchronised, so
    nothing is served until it does.
    """

    def __init__(
        self,
        max_offline: float,
        *,
        carried: float | None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_offline <= 0:
            raise ValueError("the offline bound must be positive")
        self.max_offline = max_offline
        self._monotonic = monotonic
        self._online = False
        #: Why the upstream refuses this edge (its credential), or None: nothing is served.
        self.refused: str | None = None
        now = monotonic()
        self._last_heard = now - carried if carried is not None else -math.inf

    @property
    def online(self) -> bool:
        return self._online

    def heard(self) -> None:
        """The upstream spoke (an event or a keep-alive)."""
        self._last_heard = self._monotonic()

    def mark_online(self) -> None:
        self._online = True
        self.refused = None
        self.heard()

    def refuse(self, reason: str) -> None:
        """The upstream refused the site's credential: stop serving at once (fail-closed), not
        at the bound; a reconnection with a credential that works lifts it."""
        self._online = False
        self.refused = reason

    def mark_offline(self) -> None:
        """The link is lost: offline time runs from the last moment it was heard from."""
        self._online = False

    def offline_for(self) -> float:
        """Seconds offline (0 while online; infinite for a replica that never synchronised)."""
        if self._online:
            return 0.0
        return max(0.0, self._monotonic() - self._last_heard)

    def remaining(self) -> float:
        """Seconds left before reads are refused (0 once they are)."""
        if self.refused is not None:
            return 0.0
        return max(0.0, self.max_offline - self.offline_for())

    def check(
        self, limit: float | None = None, *, source: str = "STRONGROOM_EDGE_MAX_OFFLINE"
    ) -> None:
        """Raise unless the replica may serve a value now; ``limit`` is a shorter bound for
        one secret (its type's or its own), named by ``source`` in the refusal."""
        if self.refused is not None:
            raise EdgeCredentialRefusedError(self.refused)
        offline = self.offline_for()
        bound = self.max_offline if limit is None else min(limit, self.max_offline)
        if limit is None or limit >= self.max_offline:
            source = "STRONGROOM_EDGE_MAX_OFFLINE"
        if offline <= bound:
            return
        if math.isinf(offline):
            raise EdgeOfflineTooLongError(
                "this edge has not synchronised with its upstream yet: it serves nothing until "
                "it does"
            )
        raise EdgeOfflineTooLongError(
            f"this edge has been cut off from its upstream for {offline:.0f} s, past its bound "
            f"of {bound:.0f} s ({source}): refused until it reconnects"
        )


class OfflineLimits:
    """Shorter offline bounds per secret type (``STRONGROOM_EDGE_MAX_OFFLINE_BY_TYPE``, such
    as ``database_credential=3600,api_key=7200``) and per secret (the tag
    :data:`EDGE_BOUND_TAG`, in seconds, set at the centre). A tag that is not a positive number
    counts as 0: that secret is never served offline (fail-closed)."""

    def __init__(self, by_type: Mapping[str, float] | None = None) -> None:
        self.by_type = dict(by_type or {})

    @classmethod
    def parse(cls, text: str | None) -> OfflineLimits:
        """``type=seconds,...``; a bad entry is a configuration error (fail at start)."""
        by_type: dict[str, float] = {}
        known = {t.value for t in SecretType}
        for part in (text or "").split(","):
            if not part.strip():
                continue
            kind, _, seconds = part.partition("=")
            kind = kind.strip()
            try:
                value = float(seconds)
            except ValueError:
                value = -1.0
            if kind not in known or not value > 0 or math.isinf(value):
                raise ConfigurationError(
                    "STRONGROOM_EDGE_MAX_OFFLINE_BY_TYPE must look like "
                    f"database_credential=3600,api_key=7200 (types: {', '.join(sorted(known))})"
                )
            by_type[kind] = value
        return cls(by_type)

    def for_version(self, props: VersionProperties) -> tuple[float | None, str]:
        """The shortest bound that applies to this version, and where it comes from."""
        found: tuple[float | None, str] = (None, "")
        typed = self.by_type.get(props.secret_type.value)
        if typed is not None:
            found = (typed, f"STRONGROOM_EDGE_MAX_OFFLINE_BY_TYPE for {props.secret_type.value}")
        tagged = props.tags.get(EDGE_BOUND_TAG)
        if tagged is not None:
            try:
                own = float(tagged)
            except ValueError:
                own = 0.0
            own = own if own > 0 and not math.isnan(own) else 0.0
            if found[0] is None or own < found[0]:
                found = (own, f"the secret's {EDGE_BOUND_TAG} tag")
        return found
