"""Seeing changes made elsewhere without a remount: every `interval` seconds, each directory
listed recently is asked about with its provider's cheapest honest question
(`Provider.change_mark`); one whose mark moved since its listing or the last round is
reported to `on_change(account, key)`, which drops the cached listing and tells the kernel
(as rclone's --poll-interval does).

The questions go through the account's request policy, so they wait their turn under its
`rate_limit`; on top of that, one round of an account asks at most a quarter of what the
limit allows in that time, so polling never crowds out what users do (the directories asked
least recently go first; the others wait for the next round).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from .errors import AssetfsError
from .providers.base import Entry, Provider

log = logging.getLogger("assetfs.poll")

SHARE = 0.25  # the part of an account's rate budget one round of polls may use
WATCH_ROUNDS = 10  # a directory not listed again for this many rounds (and at least…
WATCH_AT_LEAST = 600.0  # …this many seconds) is no longer polled: nobody is looking at it


@dataclass
class Watched:
    entry: Entry
    listed_at: float  # time.monotonic() of its last listing
    mark: str | None = None  # the provider's last answer (first: the listing's); None until the first
    asked_at: float = 0.0


class Poller:
    def __init__(
        self, providers: dict[str, Provider], interval: float, on_change: Callable[[str, str], Awaitable[None]]
    ):
        self.providers = providers
        self.interval = interval
        self.on_change = on_change
        self.watch_for = max(WATCH_AT_LEAST, WATCH_ROUNDS * interval)
        self._watched: dict[tuple[str, str], Watched] = {}

    def listed(self, account: str, directory: Entry, mark: str | None = None) -> None:
        """A directory was just looked at: poll it from now on. Its first mark is the one its
        listing came with (what the change question would have answered then), so the first
        round shows a change made since, even when the listing came from the disk cache of an
        earlier mount. Without one, the first round's answer is the first mark. Later listings
        leave the mark alone: the rounds keep it current, and a listing whose mark differs
        from the question's answer costs one listing again, not one every round."""
        watched = self._watched.get((account, directory.key))
        if watched is None:
            self._watched[(account, directory.key)] = Watched(directory, time.monotonic(), mark)
        else:
            watched.entry, watched.listed_at = directory, time.monotonic()
            if watched.mark is None:
                watched.mark = mark

    def watching(self, account: str) -> list[str]:
        return [key for (name, key) in self._watched if name == account]

    async def run(self) -> None:
        """Forever: a round every `interval` seconds."""
        while True:
            await trio.sleep(self.interval)
            await self.poll_once()

    async def poll_once(self) -> None:
        """One round: each account's directories, the accounts side by side."""
        now = time.monotonic()
        for key in [k for k, w in self._watched.items() if now - w.listed_at > self.watch_for]:
            del self._watched[key]
        async with trio.open_nursery() as nursery:
            for account in self.providers:
                mine = [(k, w) for k, w in self._watched.items() if k[0] == account]
                if mine:
                    nursery.start_soon(self._poll_account, account, mine)

    async def _poll_account(self, account: str, watched: list[tuple[tuple[str, str], Watched]]) -> None:
        provider = self.providers[account]
        watched.sort(key=lambda item: item[1].asked_at)
        this_round: dict = {}
        for (_, key), w in watched[: self._round_size(provider)]:
            w.asked_at = time.monotonic()
            try:
                mark = await provider.change_mark(w.entry, w.mark, this_round)
            except AssetfsError as e:
                log.debug("%s: %s: no answer to the change question this round: %s", account, key, e)
                continue
            if mark is None:  # no cheap question for this directory: stop asking
                self._watched.pop((account, key), None)
                continue
            before, w.mark = w.mark, mark
            if before is not None and mark != before:
                log.info("%s: %s changed on the provider", account, key or "/")
                await self.on_change(account, key)

    def _round_size(self, provider: Provider) -> int | None:
        budget = provider.http.budget
        if budget is None:
            return None
        return max(1, int(budget.limit * self.interval / budget.window * SHARE))
