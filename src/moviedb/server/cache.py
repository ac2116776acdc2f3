"""Encoded `get` results, kept until a commit touches their title (the issue-6 read path).

A point `get` answered from here costs a dict lookup instead of a SQLite query and an encode.
Correctness rests on one rule: every commit drops the entries of the titles it wrote, on the
event loop, before any of its writes is acknowledged (GroupCommitter._deliver). A read that ran
before the commit cached the old copies and is dropped with them; a read after it saw the commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from moviedb.model import fold_title

DEFAULT_MAX_BYTES: Final = 32 << 20

_Key = tuple[str, int | None]  # the title as the client spelt it, and the year asked for


class GetCache:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: dict[_Key, tuple[str, bytes]] = {}  # -> (folded title, result JSON)
        self._by_title: dict[str, set[_Key]] = {}  # folded title -> its entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, title: str, year: int | None) -> bytes | None:
        entry = self._entries.get((title, year))
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return entry[1]

    def peek(self, title: str, year: int | None) -> bytes | None:
        """What get() returns, without counting a hit or a miss."""
        entry = self._entries.get((title, year))
        return None if entry is None else entry[1]

    def put(self, title: str, year: int | None, result: bytes) -> None:
        if len(result) > self.max_bytes // 64:
            return  # a title with very many remakes: not worth the room
        folded = fold_title(title)
        key = (title, year)
        self._drop(key)
        self._entries[key] = (folded, result)
        self._by_title.setdefault(folded, set()).add(key)
        self.bytes += len(result)
        while self.bytes > self.max_bytes:  # the oldest first (dicts keep insertion order)
            self._drop(next(iter(self._entries)))

    def invalidate(self, folded_titles: Iterable[str]) -> None:
        for folded in folded_titles:
            for key in self._by_title.pop(folded, ()):
                entry = self._entries.pop(key, None)
                if entry is not None:
                    self.bytes -= len(entry[1])

    def _drop(self, key: _Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        folded, result = entry
        self.bytes -= len(result)
        keys = self._by_title.get(folded)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_title[folded]
