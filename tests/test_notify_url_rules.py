"""The webhook URL policy's rules one at a time (pure checks; names resolve through a table).

Each refusal names the address and why, so an operator can tell a typo from an SSRF attempt;
each boundary (URL length, ports, control characters, where a user name may hide) is checked
on both sides; the resolver is asked for the port the connection will use and is given a time
limit.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

import pytest

from strongroom.services.notify import NotificationTargetError, UrlPolicy
from strongroom.services.notify.urls import MAX_URL, display_url, system_resolver


class Recorder:
    """A resolver hook that answers every name with ``answer`` and records what it was asked."""

    def __init__(self, answer: Sequence[str] = ("8.8.8.8",)) -> None:
        self.answer = list(answer)
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append((host, port))
        return self.answer


# -- why an address is refused ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "a cloud metadata address"),
        ("0.0.0.0", "an unspecified address"),  # noqa: S104 (refused, not bound)
        ("0.1.2.3", "an unspecified address"),  # "this network", not itself unspecified
        ("224.0.0.1", "a multicast address"),
        ("169.254.1.1", "a link-local address"),
        ("127.0.0.1", "a loopback address (not allowed)"),
        ("10.0.0.1", "a private address (not allowed)"),
        ("192.0.2.1", "not a public address"),  # documentation range
    ],
)
def test_each_refusal_names_the_address_and_the_reason(address: str, reason: str) -> None:
    with pytest.raises(NotificationTargetError) as refused:
        UrlPolicy().check_address(ipaddress.ip_address(address))
    assert str(refused.value) == f"webhook target refused: {address} is {reason}"


async def test_a_refused_name_shows_the_name_and_its_address() -> None:
    policy = UrlPolicy(resolver=Recorder(["10.0.0.5"]))
    with pytest.raises(NotificationTargetError) as refused:
        await policy.check("https://hooks.example.com/")
    assert str(refused.value) == (
        "webhook target refused: hooks.example.com (10.0.0.5) is a private address (not allowed)"
    )


def test_a_literal_is_shown_as_written_and_as_read() -> None:
    with pytest.raises(NotificationTargetError) as canonical:
        UrlPolicy().check_static("http://10.0.0.1/")
    assert "refused: 10.0.0.1 is a private" in str(canonical.value)
    with pytest.raises(NotificationTargetError) as spelled_out:
        UrlPolicy().check_static("http://[0:0:0:0:0:0:0:1]/")
    assert "refused: 0:0:0:0:0:0:0:1 (::1) is a loopback" in str(spelled_out.value)


def test_ipv4_compatible_forms_start_above_loopback() -> None:
    with pytest.raises(NotificationTargetError, match=r"carries 0\.0\.0\.2"):
        UrlPolicy().check_static("http://[::2]/")


def test_local_nat64_judges_the_address_split_around_the_reserved_byte() -> None:
    """64:ff9b:1::/48 carries IPv4 in bits 48-63 and 72-87; its last 32 bits here are public."""
    with pytest.raises(NotificationTargetError, match=r"carries 10\.1\.2\.3,"):
        UrlPolicy().check_static("http://[64:ff9b:1:a01:2:300:808:808]/")


def test_a_zone_index_is_refused() -> None:
    with pytest.raises(NotificationTargetError, match="zone"):
        UrlPolicy(allow_private=True, allow_loopback=True).check_static("http://[fe80::1%25eth0]/")


@pytest.mark.parametrize("url", ["http://127.1./", "http://10.0.0.1./"])
def test_a_numeric_host_with_a_trailing_dot_is_refused(url: str) -> None:
    with pytest.raises(NotificationTargetError, match="plain dotted IPv4"):
        UrlPolicy(allow_private=True, allow_loopback=True).check_static(url)


def test_a_host_whose_last_label_is_not_a_number_is_a_name() -> None:
    """Only the last label decides: "10.0.0.X" goes to the resolver, whose answers are checked."""
    assert UrlPolicy().check_static("http://10.0.0.X/").host == "10.0.0.x"


# -- the URL's shape ----------------------------------------------------------------------------


def test_the_length_limit_is_inclusive() -> None:
    base = "https://hooks.example.com/"
    longest = base + "a" * (MAX_URL - len(base))
    assert str(UrlPolicy().check_static(longest)) == longest
    for bad in ("", longest + "a"):
        with pytest.raises(NotificationTargetError, match=f"at most {MAX_URL} characters"):
            UrlPolicy().check_static(bad)


@pytest.mark.parametrize("char", [" ", "\x01", "\x1f", "\x7f", "\\"])
def test_spaces_controls_and_backslashes_are_refused(char: str) -> None:
    with pytest.raises(NotificationTargetError, match="spaces, controls"):
        UrlPolicy().check_static(f"https://hooks.example.com/a{char}b")


def test_printable_punctuation_is_kept() -> None:
    url = "https://hooks.example.com/a!b~c"
    assert str(UrlPolicy().check_static(url)) == url


@pytest.mark.parametrize("url", ["http://@hooks.example.com/", "http://u:p@hooks.example.com/"])
def test_userinfo_is_refused_even_when_empty(url: str) -> None:
    with pytest.raises(NotificationTargetError, match="user name or password"):
        UrlPolicy().check_static(url)


@pytest.mark.parametrize("url", ["http:hooks.example.com/", "http:u@hooks.example.com/"])
def test_a_url_without_an_authority_is_refused(url: str) -> None:
    with pytest.raises(NotificationTargetError):
        UrlPolicy().check_static(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/a@b",
        "https://hooks.example.com/a@b/c",
        "https://hooks.example.com/x//a@b",
    ],
)
def test_an_at_sign_in_the_path_is_not_userinfo(url: str) -> None:
    assert str(UrlPolicy().check_static(url)) == url


@pytest.mark.parametrize("port", [1, 65535])
def test_the_first_and_last_ports_are_valid(port: int) -> None:
    assert UrlPolicy().check_static(f"https://hooks.example.com:{port}/").port == port


@pytest.mark.parametrize("port", [0, 65536])
def test_ports_outside_the_range_are_refused(port: int) -> None:
    with pytest.raises(NotificationTargetError, match="port is not valid"):
        UrlPolicy().check_static(f"https://hooks.example.com:{port}/")


# -- resolution ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("https://hooks.example.com/", 443),
        ("http://hooks.example.com/", 80),
        ("https://hooks.example.com:8443/", 8443),
        ("http://hooks.example.com:8080/", 8080),
    ],
)
async def test_the_resolver_is_asked_for_the_port_the_connection_uses(url: str, port: int) -> None:
    resolver = Recorder()
    await UrlPolicy(resolver=resolver).resolve(url)
    assert resolver.asked == [("hooks.example.com", port)]


async def test_a_literal_address_is_not_resolved() -> None:
    resolver = Recorder(["10.0.0.1"])
    target = await UrlPolicy(resolver=resolver).resolve("https://[2606:4700::1111]/")
    assert target.addresses == (ipaddress.ip_address("2606:4700::1111"),)
    assert resolver.asked == []


async def test_scoped_answers_are_read_without_their_zone() -> None:
    resolver = Recorder(["2606:4700::1111%eth0", "2606:4700::1001%a%b"])
    target = await UrlPolicy(resolver=resolver).resolve("https://hooks.example.com/")
    assert [str(a) for a in target.addresses] == ["2606:4700::1111", "2606:4700::1001"]


async def test_a_name_that_does_not_resolve_is_a_transient_refusal() -> None:
    async def nowhere(host: str, port: int) -> Sequence[str]:
        raise OSError("no such name")

    with pytest.raises(NotificationTargetError, match="does not resolve") as refused:
        await UrlPolicy(resolver=nowhere).check("https://nowhere.example.com/")
    assert refused.value.transient is True


async def test_a_resolver_that_never_answers_is_given_up_on() -> None:
    never = asyncio.Event()

    async def stuck(host: str, port: int) -> Sequence[str]:
        await never.wait()
        return []

    with pytest.raises(NotificationTargetError, match="does not resolve") as refused:
        await UrlPolicy(resolver=stuck, resolve_timeout=0.05).check("https://stuck.example.com/")
    assert refused.value.transient is True


async def test_the_system_resolver_answers_one_address_per_stream_socket() -> None:
    assert await system_resolver("127.0.0.1", 443) == ["127.0.0.1"]


# -- how a URL is shown -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:pw@[::1]:8443/p?token=x#f", "https://[::1]:8443/p"),
        ("http://hooks.example.com/p?q=1", "http://hooks.example.com/p"),
        ("http://[::1]/", "http://[::1]/"),
        ("http://[zz]/", "<invalid url>"),
    ],
)
def test_a_url_is_shown_without_credentials_query_or_fragment(url: str, shown: str) -> None:
    assert display_url(url) == shown
