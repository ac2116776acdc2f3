"""Per-server copies -> one view per movie: who agrees, which fields differ, which copy is newest.

Pure: fed with read results, returns values; interfaces only render them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from moviedb.client.address import Address
from moviedb.client.cluster import ReadResult
from moviedb.model import KNOWN_FIELDS, field_values
from moviedb.versions import Copy, generation, newest


class Group(msgspec.Struct, frozen=True):
    """Servers holding the very same revision."""

    copy: Copy
    servers: list[Address]


class FieldDiff(msgspec.Struct, frozen=True):
    field: str
    values: list[tuple[Any, list[Address]]]  # each distinct value (None = unset) and its holders


class MovieView(msgspec.Struct, frozen=True):
    key: str
    groups: list[Group]  # newest generation first, then most servers
    missing: list[Address]  # answered, but hold no copy of this movie
    differences: list[FieldDiff] = msgspec.field(default_factory=list)

    @property
    def title(self) -> str:
        return self.groups[0].copy.movie.title

    @property
    def year(self) -> int | None:
        return self.groups[0].copy.movie.year

    @property
    def newest(self) -> Copy | None:
        """The copy every other copy is an ancestor of; None when some are concurrent."""
        return newest([g.copy for g in self.groups])

    @property
    def state(self) -> str:
        """`agree` (one revision everywhere it is held), `stale` (older copies of the newest)
        or `conflict` (concurrent revisions)."""
        if len(self.groups) == 1:
            return "agree"
        return "stale" if self.newest is not None else "conflict"

    @property
    def agree(self) -> bool:
        return len(self.groups) == 1 and not self.missing

    @property
    def live(self) -> bool:
        """Some server holds it undeleted."""
        return any(not g.copy.deleted for g in self.groups)

    @property
    def deleted(self) -> bool:
        """The newest version is a tombstone (older live copies may remain: they are stale)."""
        newest = self.newest
        return newest is not None and newest.deleted


def _values(copy: Copy) -> dict[str, Any]:
    """A copy's fields for comparison; a tombstone keeps its last record and adds deleted."""
    values = field_values(copy.movie)
    return {"deleted": True, **values} if copy.deleted else values


def field_differences(groups: Sequence[Group]) -> list[FieldDiff]:
    """Fields whose values differ between groups, standard fields first."""
    if len(groups) < 2:
        return []
    values = [_values(g.copy) for g in groups]
    names: list[str] = []
    for v in values:
        names.extend(n for n in v if n not in names)
    order = {name: i for i, name in enumerate(("deleted", *KNOWN_FIELDS))}
    names.sort(key=lambda n: (order.get(n, len(order)), n))
    diffs: list[FieldDiff] = []
    for name in names:
        distinct: list[tuple[Any, list[Address]]] = []
        for group, v in zip(groups, values, strict=True):
            value = v.get(name)
            for seen, holders in distinct:
                if seen == value:
                    holders.extend(group.servers)
                    break
            else:
                distinct.append((value, list(group.servers)))
        if len(distinct) > 1:
            diffs.append(FieldDiff(name, distinct))
    return diffs


def _newest_first(group: Group) -> tuple[int, int, str]:
    return (-generation(group.copy.rev), -len(group.servers), group.copy.rev)


def reconcile(results: Iterable[ReadResult]) -> list[MovieView]:
    """One view per movie key found on any server, in key order."""
    answered = [r for r in results if r.answered]
    by_key: dict[str, dict[str, Group]] = {}
    for result in answered:
        for copy in result.copies:
            groups = by_key.setdefault(copy.key, {})
            if copy.rev in groups:
                groups[copy.rev].servers.append(result.server)
            else:
                groups[copy.rev] = Group(copy, [result.server])
    views: list[MovieView] = []
    for key in sorted(by_key):
        ordered = sorted(by_key[key].values(), key=_newest_first)
        holders = {s for g in ordered for s in g.servers}
        missing = [r.server for r in answered if r.server not in holders]
        views.append(MovieView(key, ordered, missing, field_differences(ordered)))
    return views
