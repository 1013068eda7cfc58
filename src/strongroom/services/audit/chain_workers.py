"""The audit chain checked in ranges, by worker processes: the plan, the plumbing, the worker.

Every stored event carries its own link (the hash it follows, and its own), so a chain can
be cut into ranges of consecutive events and each range checked on its own; the parent then
joins the ranges' findings in order (``ChainVerifier.join`` checks each range's first link
against the range before), and every event's position, link and HMAC is checked exactly
once, by the same walk (``verify.walk_range``) and the same verifier as a single pass.

Workers are spawned as new interpreters (``python -m strongroom.services.audit.chain_workers``),
never forked from a running event loop, and each opens its own database connection. All a
worker needs comes as one JSON document over its stdin pipe: where the log is (a PostgreSQL
URL may hold a password) and, for each range, the chain key to check it with. Neither is ever
put on a command line or in an environment, and a worker inherits none of strongroom's own
environment variables (``worker_environment``). A worker answers on stdout with its findings
(hashes, counts and key epochs, never a key). Each job is a pair of a range and its chain key
(every key epoch's key, core.audit.ChainKey): a range that starts inside a chain finds which
epoch's key its first event was linked under, and the join checks that it is the epoch the
range before reached.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from strongroom.core.anchors import CHAIN_SPAN, chain_base
from strongroom.core.audit import ChainKey
from strongroom.core.errors import StrongroomError
from strongroom.db.audit_store import ChainState, StoreLocation
from strongroom.services.audit.chain_check import ChainVerifier, Span

__all__ = [
    "RangeJob",
    "RangeResult",
    "WorkersFailedError",
    "check_in_workers",
    "plan_ranges",
    "worker_environment",
]

#: The only environment variables a worker inherits: what Python, the C library and the
#: PostgreSQL driver read (a password file or TLS settings). Nothing of strongroom's own
#: configuration (a master key or a database URL given in the environment) reaches it.
_INHERITED = ("PATH", "HOME", "LANG", "LC_", "TZ", "TMPDIR", "PYTHON", "VIRTUAL_ENV", "PG",
              "SSL_CERT_", "SYSTEMROOT")  # fmt: skip


class WorkersFailedError(Exception):
    """A worker could not be started or did not finish (the caller checks in one process)."""


@dataclass(frozen=True, slots=True)
class RangeJob:
    """The events of ``head``'s chain with after < id <= upper, to check under ``key``."""

    location: StoreLocation
    head: ChainState
    after: int
    upper: int
    key: ChainKey
    watch: frozenset[int]


@dataclass(frozen=True, slots=True)
class RangeResult:
    """What a worker found over one range: the verifier's span and the shipped edge events."""

    chain: int
    after: int
    span: Span
    shipped: list[dict[str, Any]]


def plan_ranges(
    location: StoreLocation,
    key: ChainKey,
    chains: list[ChainState],
    watches: dict[int, frozenset[int]],
    batch: int,
    count: int,
) -> list[list[RangeJob]]:
    """The ranges of each of ``count`` workers: consecutive events of one chain, about as
    many per worker, cut at multiples of ``batch`` after the chain's start (so each range
    reads the pages a single pass reads). The last range of a chain reaches to the end of
    its id span, so events beyond its head are found as a single pass finds them."""
    total = sum(h.last_seq - h.anchor_seq for h in chains)
    piece = max(1, math.ceil(total / count / batch)) * batch
    shares: list[list[RangeJob]] = [[] for _ in range(count)]
    worker, load = 0, 0
    for head in chains:
        base = chain_base(head.chain)
        after, last_id = base + head.anchor_seq, base + head.last_seq
        while True:  # give the worker what it still has room for, in whole batches
            room = max(1, math.ceil((piece - load) / batch)) * batch
            final = after + room >= last_id
            upper = base + CHAIN_SPAN if final else after + room
            job = RangeJob(location, head, after, upper, key, watches.get(head.chain, frozenset()))
            shares[worker].append(job)
            load += min(upper, last_id) - after
            if load >= piece and worker < count - 1:
                worker, load = worker + 1, 0
            if final:
                break
            after = upper
    return [share for share in shares if share]


async def check_in_workers(
    shares: list[list[RangeJob]], batch: int
) -> dict[int, list[RangeResult]]:
    """Each share checked by a worker of its own, all at once; each chain's results in order."""
    found = await asyncio.gather(*(_worker(share, batch) for share in shares))
    by_chain: dict[int, list[RangeResult]] = {}
    for result in sorted((r for results in found for r in results), key=lambda r: r.after):
        by_chain.setdefault(result.chain, []).append(result)
    return by_chain


async def _worker(share: list[RangeJob], batch: int) -> list[RangeResult]:
    document = json.dumps({
        "location": _location_out(share[0].location),
        "batch": batch,
        "jobs": [
            {
                "head": _head_out(job.head),
                "after": job.after,
                "upper": job.upper,
                "keys": [k.hex() for k in job.key.raw_for_worker()],
                "watch": sorted(job.watch),
            }
            for job in share
        ],
    }).encode("ascii")  # fmt: skip
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", __name__,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, env=worker_environment(os.environ),
        )  # fmt: skip
    except OSError as exc:
        raise WorkersFailedError(f"cannot start a worker ({type(exc).__name__})") from exc
    # No deadline of its own: a worker's queries have the stores' statement timeout, and a log
    # of a hundred million events may rightly take minutes.
    try:
        out, _ = await proc.communicate(document)
    finally:
        if proc.returncode is None:  # cancelled: the worker goes too
            proc.kill()
            await proc.wait()
    answer: dict[str, Any] = json.loads(out) if out else {"error": f"exit {proc.returncode}"}
    if "error" in answer:
        raise WorkersFailedError(f"a worker failed: {answer['error']}")
    return [_result_in(r) for r in answer["results"]]


def worker_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` a worker may inherit (see ``_INHERITED``)."""
    return {name: value for name, value in environ.items() if name.startswith(_INHERITED)}


def _location_out(location: StoreLocation) -> dict[str, Any]:
    return {"backend": location.backend, "address": location.address, "schema": location.schema}


def _head_out(head: ChainState) -> dict[str, Any]:
    return {
        "chain": head.chain, "last_seq": head.last_seq, "last_hash": head.last_hash.hex(),
        "anchor_seq": head.anchor_seq, "anchor_hash": head.anchor_hash.hex(),
        "key_epoch": head.key_epoch,
    }  # fmt: skip


def _head_in(data: dict[str, Any]) -> ChainState:
    return ChainState(
        data["last_seq"], bytes.fromhex(data["last_hash"]), data["anchor_seq"],
        bytes.fromhex(data["anchor_hash"]), data["chain"], data["key_epoch"],
    )  # fmt: skip


def _pair_out(pair: tuple[int, bytes] | None) -> list[Any] | None:
    return None if pair is None else [pair[0], pair[1].hex()]


def _pair_in(data: list[Any] | None) -> tuple[int, bytes] | None:
    return None if data is None else (int(data[0]), bytes.fromhex(data[1]))


def _result_out(chain: int, after: int, span: Span, shipped: list[dict[str, Any]]) -> Any:
    return {
        "chain": chain, "after": after, "start": _pair_out(span.start),
        "start_epoch": span.start_epoch, "checked": span.checked, "last": _pair_out(span.last),
        "end_epoch": span.end_epoch, "seen": {str(k): v.hex() for k, v in span.seen.items()},
        "broken": None if span.broken is None else list(span.broken), "shipped": shipped,
    }  # fmt: skip


def _result_in(data: dict[str, Any]) -> RangeResult:
    broken = data["broken"]
    span = Span(
        _pair_in(data["start"]), data["start_epoch"], int(data["checked"]),
        _pair_in(data["last"]), data["end_epoch"],
        {int(k): bytes.fromhex(v) for k, v in data["seen"].items()},
        None if broken is None else (int(broken[0]), str(broken[1])),
    )  # fmt: skip
    return RangeResult(int(data["chain"]), int(data["after"]), span, data["shipped"])


# -- the worker --------------------------------------------------------------------------------


async def _check(document: dict[str, Any]) -> list[Any]:
    """Walk each job's range with a verifier that starts inside its chain."""
    from strongroom.db.audit_reader import open_reader  # noqa: PLC0415 (the worker alone)
    from strongroom.services.audit.verify import walk_range  # noqa: PLC0415 (verify imports us)

    where = document["location"]
    store = await open_reader(StoreLocation(where["backend"], where["address"], where["schema"]))
    try:
        results = []
        for job in document["jobs"]:
            head = _head_in(job["head"])
            key = ChainKey(*(bytes.fromhex(k) for k in job["keys"]))
            verifier = ChainVerifier.inside(key, watch=frozenset(job["watch"]))
            walked = await walk_range(
                store, head, verifier, job["after"], job["upper"], document["batch"]
            )
            span = verifier.span(walked.broken)
            results.append(_result_out(head.chain, job["after"], span, walked.shipped))
        return results
    finally:
        await store.close()


def main() -> int:
    """Read the job from stdin, answer on stdout: ``{"results": [...]}`` or ``{"error": why}``
    (a strongroom error's message, which names no value, or a foreign error's type)."""
    try:
        answer: dict[str, Any] = {"results": asyncio.run(_check(json.load(sys.stdin.buffer)))}
    except Exception as exc:
        answer = {"error": str(exc) if isinstance(exc, StrongroomError) else type(exc).__name__}
    sys.stdout.write(json.dumps(answer))
    return 0 if "results" in answer else 1


if __name__ == "__main__":
    raise SystemExit(main())
