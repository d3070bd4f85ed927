"""Workers follow what a backend says of its accounts (here the simulator's own balance):
an account set to fast that the backend says has no fast time flips; nothing else does."""

from __future__ import annotations

from collections.abc import Callable

from router.core import Router
from router.models import Setting
from workers.backend_sync import BackendSync
from workers.drivers.simulated import SimulatedDriver

AddAccount = Callable[..., None]


def test_an_account_the_backend_says_is_out_flips_to_relax(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro", fast_hours=3)
    driver = router.driver
    assert isinstance(driver, SimulatedDriver)
    driver.set_fast_ms("a-pro", -5_000)  # the account itself says it has none left
    view = router.pool.get("a-pro")
    assert view is not None and BackendSync(router).sync(view) is not None
    flipped = router.pool.get("a-pro")
    assert flipped is not None and (flipped.setting, flipped.fast_hours_remaining) == ("relax", 0)
    assert flipped.flip_reason == "fast_hours_exhausted" and flipped.backend_fast_ms == 0


def test_a_top_up_on_an_account_set_to_relax_survives_a_stale_backend(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro", fast_hours=3)
    driver = router.driver
    assert isinstance(driver, SimulatedDriver)
    driver.set_fast_ms("a-pro", -5_000)
    router.apply(router.pool.update("a-pro", setting=Setting.RELAX, fast_hours=15))
    view = router.pool.get("a-pro")
    assert view is not None
    BackendSync(router).sync(view)  # the simulator hears of the top-up only when set to fast
    kept = router.pool.get("a-pro")
    assert kept is not None and (kept.setting, kept.fast_hours_remaining) == ("relax", 15)
    assert kept.backend_fast_ms == 0  # recorded for the drift alert


def test_a_backend_that_says_nothing_leaves_the_account_as_it_is(
    router: Router, add_account: AddAccount
) -> None:
    add_account("a-pro", "alice", "pro")
    view = router.pool.get("a-pro")
    assert view is not None and BackendSync(router).sync(view) is None  # no job yet
    same = router.pool.get("a-pro")
    assert same is not None and same.backend_fast_ms is None and same.setting == "fast"
