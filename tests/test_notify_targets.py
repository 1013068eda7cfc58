"""Where a webhook may go, and that it goes where it was checked.

- IPv6 forms of internal IPv4 addresses (IPv4-compatible, mapped, translated, NAT64, 6to4,
  Teredo) are judged by the IPv4 address they carry.
- A name is refused if any address it resolves to is refused, whatever their order.
- A delivery resolves the name once per attempt and connects to an address it checked,
  keeping the name in the Host header and for TLS: a resolver whose answer changes after the
  check (DNS rebinding) cannot move the connection.

Names resolve through the policy's resolver hook (a table these tests control), so no test
depends on /etc/hosts or a DNS server; the receivers are real HTTP(S) servers on loopback.
"""

from __future__ import annotations

import ipaddress
import secrets
import ssl
from collections.abc import Sequence

import pytest
import trustme

from helpers_notify import Receiver
from strongroom.services.notify import Notification, NotificationTargetError, UrlPolicy
from strongroom.services.notify.webhook import WebhookNotifier

KEY = secrets.token_bytes(32)
EVERYTHING_ALLOWED = {"allow_private": True, "allow_loopback": True}


class Answers:
    """A resolver hook: each call for a name pops its next answer (the last one repeats)."""

    def __init__(self, **names: list[list[str]]) -> None:
        self.names = {name.replace("_", "."): list(answers) for name, answers in names.items()}
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        answers = self.names.get(host)
        if not answers:
            raise OSError(f"{host} does not resolve here")
        return answers.pop(0) if len(answers) > 1 else answers[0]


def notice() -> Notification:
    return Notification(
        kind="revocation.completed", priority="critical", subject="s", fields={"secret": "x"}
    )


# -- IPv6 forms of IPv4 addresses ---------------------------------------------------------------

INTERNAL_IN_IPV6 = [
    "::169.254.169.254",  # IPv4-compatible: metadata
    "::127.0.0.1",
    "::7f00:1",
    "::a9fe:a9fe",
    "::10.0.0.1",
    "64:ff9b:1::7f00:1",  # local-use NAT64, last 32 bits
    "64:ff9b:1:7f00:0:1::",  # local-use NAT64 as a /48 prefix embeds it (bits 48-63, 72-87)
    "::ffff:0:7f00:1",  # IPv4-translated
    "::ffff:169.254.169.254",  # IPv4-mapped
    "64:ff9b::a9fe:a9fe",  # NAT64
    "2002:a9fe:a9fe::",  # 6to4
    "2002:7f00:1::1",
    "2001:0:808:808:0:0:5601:5601",  # Teredo: public server, client 169.254.169.254
    "2001:0:7f00:1:0:0:f7f7:f7f7",  # Teredo: server 127.0.0.1, public client 8.8.8.8
]


@pytest.mark.parametrize("address", INTERNAL_IN_IPV6)
async def test_ipv6_forms_of_internal_ipv4_addresses_are_refused(address: str) -> None:
    url = f"http://[{address}]/hook"
    with pytest.raises(NotificationTargetError) as refused:
        await UrlPolicy().check(url)
    assert "carries" in str(refused.value) or "not a public" in str(refused.value)


@pytest.mark.parametrize(
    "address", ["::169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::", "::a9fe:a9fe"]
)
async def test_metadata_behind_ipv6_is_refused_whatever_the_configuration(address: str) -> None:
    with pytest.raises(NotificationTargetError, match="metadata"):
        await UrlPolicy(**EVERYTHING_ALLOWED).check(f"http://[{address}]/")


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1"])
async def test_ipv6_forms_of_public_ipv4_addresses_pass(address: str) -> None:
    """NAT64 and 6to4 are how IPv6-only hosts reach public IPv4 services: no traffic here."""
    url = f"https://[{address}]/hook"
    assert await UrlPolicy().check(url) == url


def test_the_embedded_address_is_named_in_the_refusal() -> None:
    with pytest.raises(NotificationTargetError, match=r"carries 127\.0\.0\.1"):
        UrlPolicy().check_static("http://[64:ff9b::7f00:1]/")


async def test_loopback_ipv6_itself_follows_the_loopback_setting() -> None:
    with pytest.raises(NotificationTargetError, match="loopback"):
        await UrlPolicy().check("http://[::1]/")
    assert await UrlPolicy(allow_loopback=True).check("http://[::1]/") == "http://[::1]/"


# -- every resolved address is checked ----------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        ["8.8.8.8", "169.254.169.254"],
        ["169.254.169.254", "8.8.8.8"],
        ["1.1.1.1", "2606:4700::1111", "10.0.0.5"],
        ["2606:4700::1111", "::ffff:127.0.0.1"],
        ["8.8.8.8", "127.0.0.1"],
    ],
)
async def test_a_name_is_refused_if_any_of_its_addresses_is(answer: list[str]) -> None:
    resolver = Answers(hooks_example_com=[answer])
    policy = UrlPolicy(resolver=resolver)
    with pytest.raises(NotificationTargetError, match=r"hooks\.example\.com"):
        await policy.check("https://hooks.example.com/hook")
    with pytest.raises(NotificationTargetError):
        await policy.resolve("https://hooks.example.com/hook")
    assert resolver.calls == ["hooks.example.com"] * 2


async def test_a_name_whose_addresses_all_pass_is_kept_with_every_address() -> None:
    resolver = Answers(hooks_example_com=[["8.8.8.8", "2606:4700::1111"]])
    target = await UrlPolicy(resolver=resolver).resolve("https://hooks.example.com:8443/h?q=1")
    assert target.host == "hooks.example.com"
    assert target.addresses == (
        ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("2606:4700::1111"),
    )  # fmt: skip
    assert str(target.url) == "https://hooks.example.com:8443/h?q=1"


async def test_an_answer_that_is_not_an_address_is_refused() -> None:
    policy = UrlPolicy(resolver=Answers(odd_test=[["not-an-ip"]]))
    with pytest.raises(NotificationTargetError, match="not an address"):
        await policy.check("http://odd.test/")


# -- deliveries connect to what was checked -----------------------------------------------------


async def test_a_changed_answer_after_the_check_cannot_move_the_delivery() -> None:
    """Rebinding: the name first resolves to the receiver, then to another host. The attempt
    resolves once, checks, and connects to the address it checked."""
    first = Receiver(host="127.0.0.1")
    await first.start()
    other = Receiver(host="127.0.0.2", port=first.port)
    await other.start()
    try:
        resolver = Answers(rebind_test=[["127.0.0.1"], ["127.0.0.2"]])
        notifier = WebhookNotifier(
            [f"http://rebind.test:{first.port}/hook"],
            signing_key=KEY,
            url_policy=UrlPolicy(allow_loopback=True, resolver=resolver),
            retries=0,
        )
        (outcome,) = await notifier.deliver(notice())
        assert outcome.ok, outcome
        assert resolver.calls == ["rebind.test"]  # one resolution for the attempt
        assert len(first.requests) == 1
        assert first.requests[0].headers["host"] == f"rebind.test:{first.port}"
        assert other.requests == []
    finally:
        await first.stop()
        await other.stop()


async def test_every_attempt_checks_again_before_it_connects() -> None:
    """The next attempt resolves again, and an answer that is now refused stops it."""
    receiver = Receiver(script=[(503, {})])
    await receiver.start()
    try:
        resolver = Answers(flip_test=[["127.0.0.1"], ["10.0.0.1"]])
        notifier = WebhookNotifier(
            [f"http://flip.test:{receiver.port}/hook"],
            signing_key=KEY,
            url_policy=UrlPolicy(allow_loopback=True, resolver=resolver),
            retries=1,
            backoff=0.01,
        )
        (outcome,) = await notifier.deliver(notice())
        assert not outcome.ok
        assert (outcome.status, outcome.attempts) == ("bad_target", 2)
        assert "private" in (outcome.error or "")
        assert len(receiver.requests) == 1  # only the checked loopback address was reached
    finally:
        await receiver.stop()


async def test_a_refused_connection_falls_back_to_the_next_checked_address() -> None:
    receiver = Receiver(host="127.0.0.1")
    await receiver.start()
    try:
        resolver = Answers(two_test=[["127.0.0.3", "127.0.0.1"]])  # nothing listens on .3
        notifier = WebhookNotifier(
            [f"http://two.test:{receiver.port}/hook"],
            signing_key=KEY,
            url_policy=UrlPolicy(allow_loopback=True, resolver=resolver),
            retries=0,
        )
        (outcome,) = await notifier.deliver(notice())
        assert outcome.ok, outcome
        assert len(receiver.requests) == 1
    finally:
        await receiver.stop()


async def test_tls_keeps_the_name_for_sni_and_the_certificate() -> None:
    """The certificate names only hooks.test: the delivery verifies it although the
    connection goes to the checked address, 127.0.0.1."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.test").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    receiver = Receiver(tls=server_context)
    await receiver.start()
    try:
        resolver = Answers(hooks_test=[["127.0.0.1"]])
        notifier = WebhookNotifier(
            [f"https://hooks.test:{receiver.port}/hook"],
            signing_key=KEY,
            url_policy=UrlPolicy(allow_loopback=True, resolver=resolver),
            retries=0,
            verify=client_context,
        )
        (outcome,) = await notifier.deliver(notice())
        assert outcome.ok, outcome
        assert receiver.requests[0].headers["host"] == f"hooks.test:{receiver.port}"
        # The same receiver reached by address only fails verification: the name mattered.
        by_address = WebhookNotifier(
            [f"https://127.0.0.1:{receiver.port}/hook"],
            signing_key=KEY,
            url_policy=UrlPolicy(allow_loopback=True),
            retries=0,
            verify=client_context,
        )
        (refused,) = await by_address.deliver(notice())
        assert not refused.ok
        assert len(receiver.requests) == 1
    finally:
        await receiver.stop()
