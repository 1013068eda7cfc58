"""Shares encrypted to their holders' age keys: only the holder's identity opens one; bad keys
and wrong identities are refused without quoting a share or a key."""

from __future__ import annotations

import secrets

import pytest
from pyrage import x25519

from strongroom.core.errors import ShareError, ValidationError
from strongroom.core.shares import combine, split
from strongroom.services.custody.holders import open_for_holder, parse_recipients, seal_for_holder


def test_each_share_opens_only_with_its_holders_identity() -> None:
    key = secrets.token_bytes(32)
    share_set = split(key, shares=3, threshold=2)
    holders = [x25519.Identity.generate() for _ in range(3)]
    recipients = parse_recipients([str(h.to_public()) for h in holders], shares=3)
    sealed = [seal_for_holder(s, r) for s, r in zip(share_set.shares, recipients, strict=True)]
    assert all(s.startswith("-----BEGIN AGE ENCRYPTED FILE-----") for s in sealed)
    assert not any(share_set.shares[0].split()[0] + " " in s for s in sealed)
    opened = [open_for_holder(s, str(h)) for s, h in zip(sealed, holders, strict=True)]
    assert opened == list(share_set.shares)
    assert bytes(combine(opened[1:])) == key
    with pytest.raises(ShareError, match="does not open") as caught:
        open_for_holder(sealed[0], f"# a comment\n{holders[1]}\n")
    assert str(holders[1]) not in str(caught.value)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["age1notakey"], "holder key 1 is not an age public key"),
        ([], "one --holder-key per share"),
        (["same", "same"], "must be different"),
    ],
)
def test_bad_holder_keys_are_refused(keys: list[str], message: str) -> None:
    if keys == ["same", "same"]:
        keys = [str(x25519.Identity.generate().to_public())] * 2
    with pytest.raises(ValidationError, match=message):
        parse_recipients(keys, shares=max(1, len(keys)))


def test_an_identity_file_without_an_identity_is_refused() -> None:
    sealed = seal_for_holder("word " * 33, x25519.Identity.generate().to_public())
    with pytest.raises(ShareError, match="no age identity"):
        open_for_holder(sealed, "nothing here\n")
    with pytest.raises(ShareError, match="does not open"):
        open_for_holder(
            "-----BEGIN AGE ENCRYPTED FILE-----\ngarbage\n", str(x25519.Identity.generate())
        )
