"""An owner's opt-in is a real bool: a truthy string or number from an untyped caller is
refused, never read as consent to run relax work on fast hours."""

from __future__ import annotations

import pytest

from router.core import Router
from router.errors import AccountError
from router.scripts import text_hash

NOT_BOOLS: list[object] = ["false", "0", "no", "", "true", 0, 1, 1.0, [], b"false"]


def stored(router: Router, owner: str) -> dict[str, str]:
    return text_hash(router.redis.hgetall(router.keys.owner_options(owner)))


@pytest.mark.parametrize("value", NOT_BOOLS, ids=repr)
def test_set_owner_options_refuses_anything_but_a_bool_and_stores_nothing(
    router: Router, value: object
) -> None:
    with pytest.raises(AccountError, match="upgrade_expiring") as caught:
        router.pool.set_owner_options("alice", upgrade_expiring=value)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_account"
    assert stored(router, "alice") == {}

    for before in (False, True):
        router.apply(router.pool.set_owner_options("alice", upgrade_expiring=before))
        with pytest.raises(AccountError):
            router.pool.set_owner_options("alice", upgrade_expiring=value)  # type: ignore[arg-type]
        assert router.pool.owner_options("alice").upgrade_expiring is before


def test_set_owner_options_still_takes_true_false_and_none_for_unchanged(router: Router) -> None:
    router.apply(router.pool.set_owner_options("alice", upgrade_expiring=True))
    assert router.pool.owner_options("alice").upgrade_expiring is True
    router.apply(router.pool.set_owner_options("alice"))
    router.apply(router.pool.set_owner_options("alice", upgrade_expiring=None))
    assert router.pool.owner_options("alice").upgrade_expiring is True
    router.apply(router.pool.set_owner_options("alice", upgrade_expiring=False))
    assert router.pool.owner_options("alice").upgrade_expiring is False
    assert stored(router, "alice")["upgrade_expiring"] == "0"
