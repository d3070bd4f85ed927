"""Reads each account's state from its backend at a slow interval, where the backend tells
it, so the router's fast hours and setting follow the truth: an account the backend says has
no fast time left flips to relax; a reckoning that drifts from the backend's is reported
(`byoa_account_backend_fast_time_remaining_seconds`, a warning, the ByoaFastHoursDrift
alert). One worker reads each account per interval, whichever claims it first."""

from __future__ import annotations

import logging

from router.accounts import MS_PER_HOUR, AccountView
from router.core import Router
from router.driver import BackendAccount, DriverError
from router.scripts import Scripts

log = logging.getLogger(__name__)


class BackendSync:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.settings = router.settings

    def sync_due(self) -> float:
        """Read the state of every account no other worker read this interval; returns how
        long to wait before looking again (the interval: each worker lists the accounts
        once an interval, not more)."""
        interval = self.settings.backend_sync_seconds
        if interval <= 0:
            return 3600.0
        hold_ms = max(1, round(interval * 1000))
        for view in self.router.pool.accounts():
            key = self.router.keys.backend_sync(view.owner, view.id)
            if self.router.redis.set(key, "1", nx=True, px=hold_ms):
                self.sync(view)
        return interval

    def sync(self, view: AccountView) -> BackendAccount | None:
        """Ask the account's backend, and apply what it says; None when it says nothing."""
        ref = self.router.account_ref(view.owner, view.id)
        if ref is None:
            return None
        try:
            state = self.router.driver.account_state(ref)
        except DriverError as e:  # the driver's own words (router.driver)
            log.info("reading the state of account %s from its backend: %s", view.id, e)
            return None
        if state is not None:
            self.apply(view, state)
        return state

    def apply(self, view: AccountView, state: BackendAccount) -> None:
        """Record the backend's fast time on the account, and set the router's to none when
        the backend says there is none left on an account set to fast (it then flips to
        relax, rule 4). An account an operator set to relax spends none: a backend that
        hears of fast time only when the account is set to fast (the simulator) may still
        say "none" after a top-up or a renewal there."""
        router = self.router
        seconds, micros = router.redis.time()
        fields: list[str | int] = ["set", view.id]
        fields += ["backend_synced_at", int(seconds) * 1_000_000 + int(micros)]
        if state.fast_ms is not None:
            fields += ["backend_fast_ms", max(state.fast_ms, 0)]
        ours = round(view.fast_hours_remaining * MS_PER_HOUR)
        if state.exhausted and ours > 0 and view.setting == "fast":
            fields += ["fast_ms", 0]
            log.warning(
                "account %s: its backend has no fast time left (%s); flipping it to relax",
                view.id,
                state.source,
            )
        elif state.fast_ms is not None:
            drift = abs(ours - state.fast_ms) / MS_PER_HOUR
            if drift > self.settings.backend_drift_hours:
                log.warning(
                    "account %s: %.2f fast hours by the router's reckoning, %.2f by its "
                    "backend's (%s)",
                    view.id,
                    ours / MS_PER_HOUR,
                    state.fast_ms / MS_PER_HOUR,
                    state.source,
                )
        scripts = router.scripts
        raw = scripts.owner_call(scripts.account_write, view.owner, fields)
        _, outcome = Scripts.decode(view.owner, raw)
        router.apply(outcome)
