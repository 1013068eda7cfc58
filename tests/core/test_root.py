"""The root key wrapped by a master key (core.root): only that master opens it, for its epoch."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from strongroom.core.crypto import MasterKey
from strongroom.core.errors import CustodyError
from strongroom.core.keys import Purpose
from strongroom.core.root import RootRecord, unwrap_root, wrap_root

NOW = datetime(2026, 12, 4, tzinfo=UTC)


def test_the_wrapping_master_opens_the_root_and_no_other_does() -> None:
    root, master, other = (MasterKey.generate()[0] for _ in range(3))
    record = wrap_root(root, master, epoch=3, now=NOW)
    opened = unwrap_root(RootRecord.from_json(record.to_json()), master)
    assert opened is not None
    # The same root: every derived key, hence every MAC and token digest, is unchanged.
    assert opened.derive(Purpose.TOKEN_DIGEST) == root.derive(Purpose.TOKEN_DIGEST)
    assert unwrap_root(record, other) is None
    assert unwrap_root(record, root) is None  # the root is not a master that opens itself


def test_a_record_moved_to_another_epoch_does_not_open() -> None:
    root, master = MasterKey.generate()[0], MasterKey.generate()[0]
    record = wrap_root(root, master, epoch=1, now=NOW)
    assert unwrap_root(dataclasses.replace(record, epoch=2), master) is None


def test_a_mangled_record_is_refused_without_its_content() -> None:
    root, master = MasterKey.generate()[0], MasterKey.generate()[0]
    record = wrap_root(root, master, epoch=0, now=NOW)
    with pytest.raises(CustodyError, match="not well formed") as caught:
        unwrap_root(dataclasses.replace(record, wrapped="%%%"), master)
    assert record.wrapped not in str(caught.value)
    with pytest.raises(CustodyError, match="not well formed"):
        RootRecord.from_json('{"epoch": 1}')
    assert record.wrapped not in repr(record)
