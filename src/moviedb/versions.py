"""Revisions and histories: which copy of a movie supersedes which (pure: no I/O, no clock).

A revision is `N-H`: generation N and a 64-bit hash H of the parent revisions, the canonical
record and the deleted flag. A copy carries its ancestors' revisions, newest first, so that any
two copies can be compared without a clock: same, newer, older, or in conflict.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Final

import msgspec

from moviedb.model import Movie, canonical_bytes, key_of

HISTORY_LIMIT: Final = 32


class Copy(msgspec.Struct, forbid_unknown_fields=True):
    """One server's versioned copy of a movie (a tombstone when `deleted`)."""

    key: str
    movie: Movie
    rev: str
    history: list[str] = msgspec.field(default_factory=list)
    deleted: bool = False
    written_at: float = 0.0  # the writer's wall clock, for display only; never orders anything


class Relation(enum.Enum):
    SAME = "same"
    NEWER = "newer"  # the first copy supersedes the second
    OLDER = "older"  # the second copy supersedes the first
    CONFLICT = "conflict"  # neither supersedes the other


class Decision(enum.Enum):
    """What a server does with an incoming write, given what it stores."""

    APPLY = "applied"
    SAME = "same"
    STALE = "stale"
    CONFLICT = "conflict"


def generation(rev: str) -> int:
    head, _, _ = rev.partition("-")
    return int(head)


def _revision(parents: Sequence[str], movie: Movie, deleted: bool) -> str:
    import hashlib  # here: a command that only reads never needs it (see launcher.py)

    digest = hashlib.blake2b(digest_size=8)
    for parent in sorted(parents):
        digest.update(parent.encode())
        digest.update(b"\x00")
    digest.update(b"\x01" if deleted else b"\x02")
    digest.update(canonical_bytes(movie))
    gen = 1 + max((generation(p) for p in parents), default=0)
    return f"{gen}-{digest.hexdigest()}"


def first_copy(movie: Movie, *, now: float = 0.0) -> Copy:
    """A copy with no parent: equal records added independently get equal revisions."""
    return Copy(key=key_of(movie), movie=movie, rev=_revision((), movie, False), written_at=now)


def child(
    parents: Sequence[Copy], movie: Movie, *, deleted: bool = False, now: float = 0.0
) -> Copy:
    """A copy that supersedes every parent; several parents make a resolution of a conflict."""
    if not parents:
        return first_copy(movie, now=now) if not deleted else _tombstone_without_parent(movie, now)
    keys = {p.key for p in parents}
    if len(keys) != 1 or key_of(movie) not in keys:
        raise ValueError("a child keeps the identity (title and year) of its parents")
    history = _merge_histories(parents)
    rev = _revision([p.rev for p in parents], movie, deleted)
    return Copy(
        key=parents[0].key,
        movie=movie,
        rev=rev,
        history=history[:HISTORY_LIMIT],
        deleted=deleted,
        written_at=now,
    )


def _tombstone_without_parent(movie: Movie, now: float) -> Copy:
    return Copy(key_of(movie), movie, _revision((), movie, True), [], True, now)


def _newest_first(rev: str) -> tuple[int, str]:
    return (-generation(rev), rev)


def _merge_histories(parents: Iterable[Copy]) -> list[str]:
    """The parents' own revisions and as many of their ancestors as fit, newest generation first.

    The parents always stay, even one far behind the others: cutting the history by generation
    alone could drop a branch from its own resolution, which would then conflict with it.
    """
    own: set[str] = set()
    ancestors: set[str] = set()
    for parent in parents:
        own.add(parent.rev)
        ancestors.update(parent.history)
    ancestors -= own
    room = max(HISTORY_LIMIT - len(own), 0)
    kept = own.union(sorted(ancestors, key=_newest_first)[:room])
    return sorted(kept, key=_newest_first)


def compare(x: Copy, y: Copy) -> Relation:
    if x.rev == y.rev:
        return Relation.SAME
    if y.rev in x.history:
        return Relation.NEWER
    if x.rev in y.history:
        return Relation.OLDER
    return Relation.CONFLICT


def decide(stored: Copy | None, incoming: Copy) -> Decision:
    """A server's rule: apply only what supersedes the stored copy; never merge by itself."""
    if stored is None:
        return Decision.APPLY
    relation = compare(incoming, stored)
    if relation is Relation.SAME:
        return Decision.SAME
    if relation is Relation.NEWER:
        return Decision.APPLY
    if relation is Relation.OLDER:
        return Decision.STALE
    return Decision.CONFLICT


def newest(copies: Sequence[Copy]) -> Copy | None:
    """The copy that is the same as or newer than every other, or None when they conflict."""
    # Two copies that conflict with each other do not end the search: a later copy (a
    # resolution) may supersede both. If some copy supersedes all others it wins every
    # comparison it takes part in, so it ends up as `best`; the final check rejects the rest.
    best: Copy | None = None
    for copy in copies:
        if best is None or compare(copy, best) is Relation.NEWER:
            best = copy
    if best is None:
        return None
    if all(compare(best, c) in (Relation.SAME, Relation.NEWER) for c in copies):
        return best
    return None
