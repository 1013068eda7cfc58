"""A small network of Linux network namespaces for edge scenarios (root only).

One namespace holds the centre, one each edge; each edge has an uplink (a veth pair) to the
centre, which a scenario cuts and heals with ``ip link set ... down/up``. The test process (the
root namespace) reaches the centre over an admin link and each edge over its site link, where
the consumers are; neither goes through the uplinks, and no namespace has a default route, so
a cut uplink is a cut. Addresses come from one random 10.x.y.0/24 per topology (only these
namespaces hold them); everything is deleted on the way out, failure or not.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["Topology", "topology"]


def ip(*args: str, ns: str | None = None) -> None:
    command = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


@dataclass
class Topology:
    """Names and addresses; ``uplink(i)`` is edge i's address of the centre."""

    tag: str
    prefix: str
    edges: int
    namespaces: list[str] = field(default_factory=list)

    @property
    def centre(self) -> str:
        return f"sr{self.tag}c"

    def edge(self, i: int) -> str:
        return f"sr{self.tag}e{i}"

    def _addr(self, link: int, end: int) -> str:
        return f"{self.prefix}.{link * 4 + end}"

    @property
    def admin_addr(self) -> str:
        """The centre, as the test process reaches it."""
        return self._addr(0, 2)

    def uplink_addr(self, i: int) -> str:
        """The centre, as edge i reaches it (over its uplink)."""
        return self._addr(i, 1)

    def site_addr(self, i: int) -> str:
        """Edge i, as its consumers (the test process) reach it."""
        return self._addr(10 + i, 2)

    def centre_addrs(self) -> list[str]:
        return [self.admin_addr, *(self.uplink_addr(i) for i in range(1, self.edges + 1))]

    def exec(self, ns: str) -> list[str]:
        """The command prefix that runs a program inside ``ns``."""
        return ["ip", "netns", "exec", ns]

    def cut(self, i: int) -> None:
        ip("link", "set", f"sr{self.tag}u{i}", "down", ns=self.centre)

    def heal(self, i: int) -> None:
        ip("link", "set", f"sr{self.tag}u{i}", "up", ns=self.centre)

    def _pair(self, link: int, left: str | None, right: str, left_if: str, right_if: str) -> None:
        """A veth pair: ``left`` (None: the root namespace) gets .1, ``right`` gets .2."""
        ip("link", "add", left_if, "type", "veth", "peer", "name", right_if)
        if left is not None:
            ip("link", "set", left_if, "netns", left)
        ip("link", "set", right_if, "netns", right)
        ip("addr", "add", f"{self._addr(link, 1)}/30", "dev", left_if, ns=left)
        ip("addr", "add", f"{self._addr(link, 2)}/30", "dev", right_if, ns=right)
        ip("link", "set", left_if, "up", ns=left)
        ip("link", "set", right_if, "up", ns=right)

    def build(self) -> None:
        for ns in (self.centre, *(self.edge(i) for i in range(1, self.edges + 1))):
            ip("netns", "add", ns)
            self.namespaces.append(ns)
            ip("link", "set", "lo", "up", ns=ns)
        t = self.tag
        self._pair(0, None, self.centre, f"sr{t}a0", f"sr{t}a1")  # admin: root -> centre
        for i in range(1, self.edges + 1):
            self._pair(i, self.centre, self.edge(i), f"sr{t}u{i}", f"sr{t}d{i}")  # uplink
            self._pair(10 + i, None, self.edge(i), f"sr{t}s{i}", f"sr{t}l{i}")  # site link

    def destroy(self) -> None:
        """Deleting a namespace deletes its ends of the pairs, and so the pairs."""
        for ns in reversed(self.namespaces):
            with contextlib.suppress(RuntimeError):
                ip("netns", "del", ns)
        self.namespaces.clear()


@contextlib.contextmanager
def topology(edges: int) -> Iterator[Topology]:
    prefix = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
    net = Topology(secrets.token_hex(3), prefix, edges)
    try:
        net.build()
        yield net
    finally:
        net.destroy()
