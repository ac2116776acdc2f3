"""reconcile(): per-server read results -> one view per movie (pure: plain values, no servers)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from moviedb.client.address import Address
from moviedb.client.cluster import ReadResult, ReadStatus
from moviedb.client.reconcile import FieldDiff, Group, MovieView, field_differences, reconcile
from moviedb.errors import InvalidMovie
from moviedb.model import Movie, validate
from moviedb.versions import Copy, child, first_copy, generation

A, B, C, D, E = (Address("127.0.0.1", 7001 + i) for i in range(5))


def movie(title: str = "Alien", year: int | None = 1979, **fields: Any) -> Movie:
    return validate(Movie(title=title, year=year, **fields))


def edit(parent: Copy, **fields: Any) -> Copy:
    return child([parent], validate(msgspec.structs.replace(parent.movie, **fields)))


def delete(parent: Copy) -> Copy:
    return child([parent], parent.movie, deleted=True)


def found(server: Address, *copies: Copy) -> ReadResult:
    """What a server that answered says: its copies, or missing when it has none."""
    return ReadResult(server, ReadStatus.FOUND if copies else ReadStatus.MISSING, list(copies))


def failed(server: Address, status: ReadStatus) -> ReadResult:
    return ReadResult(server, status, error="no answer")


ALIEN = first_copy(movie(director="Ridley Scott", rating=8.1))
ALIEN_RATED = edit(ALIEN, rating=8.5)  # generation 2
ALIEN_PLOT = edit(ALIEN, plot="In space no one can hear you scream.")  # concurrent with RATED
ALIEN_LATER = edit(ALIEN_RATED, runtime_min=117)  # generation 3, on the RATED branch
ALIEN_RESOLVED = child(
    [ALIEN_RATED, ALIEN_PLOT],
    msgspec.structs.replace(ALIEN_RATED.movie, plot=ALIEN_PLOT.movie.plot),
)
ALIEN_DELETED = delete(ALIEN_RATED)
KONG_1933 = first_copy(movie("King Kong", 1933))
KONG_2005 = first_copy(movie("King Kong", 2005, director="Peter Jackson"))


def only(views: list[MovieView]) -> MovieView:
    assert len(views) == 1, views
    return views[0]


def servers_of(view: MovieView) -> list[list[Address]]:
    return [g.servers for g in view.groups]


# --- agreement, stale copies, conflicts -----------------------------------------------------------


def test_one_revision_everywhere_agrees() -> None:
    view = only(reconcile([found(A, ALIEN), found(B, ALIEN), found(C, ALIEN)]))
    assert view.key == ALIEN.key
    assert (view.title, view.year) == ("Alien", 1979)
    assert view.state == "agree"
    assert view.agree
    assert view.live
    assert servers_of(view) == [[A, B, C]]
    assert view.groups[0].copy == ALIEN
    assert view.missing == []
    assert view.differences == []
    assert view.newest == ALIEN


def test_equal_records_added_independently_agree() -> None:
    """Two servers that were given the same record apart hold the same revision."""
    again = first_copy(movie(director="Ridley Scott", rating=8.1), now=99.0)
    view = only(reconcile([found(A, ALIEN), found(B, again)]))
    assert view.state == "agree"
    assert servers_of(view) == [[A, B]]


def test_agree_where_held_but_missing_elsewhere() -> None:
    view = only(reconcile([found(A, ALIEN), found(B), found(C, ALIEN)]))
    assert view.state == "agree"  # one revision where it is held...
    assert not view.agree  # ...but not everywhere
    assert view.missing == [B]


def test_an_older_copy_of_the_newest_is_stale() -> None:
    view = only(reconcile([found(A, ALIEN), found(B, ALIEN_RATED), found(C, ALIEN_RATED)]))
    assert view.state == "stale"
    assert not view.agree
    assert view.newest == ALIEN_RATED
    assert [g.copy.rev for g in view.groups] == [ALIEN_RATED.rev, ALIEN.rev]
    assert servers_of(view) == [[B, C], [A]]
    assert view.differences == [FieldDiff("rating", [(8.5, [B, C]), (8.1, [A])])]


def test_a_copy_several_edits_behind_is_stale() -> None:
    view = only(reconcile([found(A, ALIEN), found(B, ALIEN_RATED), found(C, ALIEN_LATER)]))
    assert view.state == "stale"
    assert view.newest == ALIEN_LATER
    assert servers_of(view) == [[C], [B], [A]]


def test_two_independent_edits_of_one_parent_conflict() -> None:
    view = only(reconcile([found(A, ALIEN_RATED), found(B, ALIEN_PLOT), found(C, ALIEN)]))
    assert view.state == "conflict"
    assert view.newest is None
    assert not view.agree
    assert {g.copy.rev for g in view.groups[:2]} == {ALIEN_RATED.rev, ALIEN_PLOT.rev}
    assert view.groups[2].copy == ALIEN  # the common parent: oldest generation last
    assert view.title == "Alien"  # shown from a newest-generation copy even in a conflict


def test_a_resolution_supersedes_both_branches() -> None:
    view = only(reconcile([found(A, ALIEN_RATED), found(B, ALIEN_PLOT), found(C, ALIEN_RESOLVED)]))
    assert view.state == "stale"
    assert view.newest == ALIEN_RESOLVED
    assert view.groups[0].servers == [C]


def test_a_conflict_deeper_in_one_branch_is_still_a_conflict() -> None:
    view = only(reconcile([found(A, ALIEN_LATER), found(B, ALIEN_PLOT)]))
    assert view.state == "conflict"
    assert view.newest is None


# --- several movies, and who did not answer -------------------------------------------------------


def test_remakes_are_separate_views_in_key_order() -> None:
    views = reconcile([found(A, KONG_1933, KONG_2005), found(B, KONG_1933), found(C)])
    assert [(v.title, v.year) for v in views] == [("King Kong", 1933), ("King Kong", 2005)]
    assert [v.key for v in views] == sorted(v.key for v in views)
    old, new = views
    assert servers_of(old) == [[A, B]]
    assert old.missing == [C]
    assert servers_of(new) == [[A]]
    assert new.missing == [B, C]
    assert old.state == new.state == "agree"


def test_unanswered_servers_are_neither_holders_nor_missing() -> None:
    results = [
        failed(A, ReadStatus.UNREACHABLE),
        found(B, ALIEN),
        failed(C, ReadStatus.TIMEOUT),
        found(D),
        failed(E, ReadStatus.ERROR),
    ]
    view = only(reconcile(results))
    assert servers_of(view) == [[B]]
    assert view.missing == [D]
    assert view.state == "agree"


def test_unanswered_servers_copies_are_ignored() -> None:
    """A result that did not answer contributes nothing, even if it carries copies."""
    odd = ReadResult(A, ReadStatus.TIMEOUT, [ALIEN_PLOT])
    view = only(reconcile([odd, found(B, ALIEN)]))
    assert servers_of(view) == [[B]]


@pytest.mark.parametrize(
    "results",
    [
        [],
        [found(A), found(B)],
        [failed(A, ReadStatus.UNREACHABLE), failed(B, ReadStatus.TIMEOUT)],
    ],
    ids=["no servers", "all missing", "none answered"],
)
def test_no_copies_no_views(results: list[ReadResult]) -> None:
    assert reconcile(results) == []


def test_reconcile_takes_any_iterable() -> None:
    view = only(reconcile(r for r in [found(A, ALIEN), found(B)]))
    assert view.missing == [B]


# --- group order ----------------------------------------------------------------------------------


def test_groups_newest_generation_first_even_when_held_by_fewer() -> None:
    view = only(
        reconcile([found(A, ALIEN), found(B, ALIEN), found(C, ALIEN), found(D, ALIEN_RATED)])
    )
    assert servers_of(view) == [[D], [A, B, C]]


def test_groups_of_one_generation_most_servers_first() -> None:
    view = only(
        reconcile(
            [found(A, ALIEN_RATED), found(B, ALIEN_PLOT), found(C, ALIEN_PLOT), found(D, ALIEN)]
        )
    )
    assert [g.copy.rev for g in view.groups] == [ALIEN_PLOT.rev, ALIEN_RATED.rev, ALIEN.rev]
    assert servers_of(view) == [[B, C], [A], [D]]


def test_groups_tied_on_generation_and_servers_are_ordered_by_revision() -> None:
    one = only(reconcile([found(A, ALIEN_RATED), found(B, ALIEN_PLOT)]))
    other = only(reconcile([found(A, ALIEN_PLOT), found(B, ALIEN_RATED)]))
    expected = sorted([ALIEN_RATED.rev, ALIEN_PLOT.rev])
    assert [g.copy.rev for g in one.groups] == expected
    assert [g.copy.rev for g in other.groups] == expected


# --- field differences ----------------------------------------------------------------------------


def test_each_distinct_value_with_its_holders() -> None:
    """Three revisions, two of which share a rating: that value lists both groups' servers."""
    shares_rating = edit(ALIEN, director="R. Scott")  # rating 8.1, like ALIEN
    results = [
        found(A, ALIEN_RATED),
        found(B, shares_rating),
        found(C, ALIEN),
        found(D),
        found(E, ALIEN_RATED),
    ]
    view = only(reconcile(results))
    assert view.state == "conflict"
    assert servers_of(view) == [[A, E], [B], [C]]
    by_field = {d.field: d.values for d in view.differences}
    assert set(by_field) == {"director", "rating"}
    assert by_field["rating"] == [(8.5, [A, E]), (8.1, [B, C])]
    assert by_field["director"] == [("Ridley Scott", [A, E, C]), ("R. Scott", [B])]


def test_unset_values_are_none_and_fields_come_in_a_fixed_order() -> None:
    """Standard fields in the record's order (plot after rating), then extras by name."""
    changed = edit(
        ALIEN, plot="Nostromo.", rating=9.0, cast=["Sigourney Weaver"], extra={"zz": 1, "cut": "x"}
    )
    view = only(reconcile([found(A, changed), found(B, ALIEN)]))
    assert [d.field for d in view.differences] == ["cast", "rating", "plot", "cut", "zz"]
    assert view.differences[0] == FieldDiff("cast", [(["Sigourney Weaver"], [A]), (None, [B])])
    assert view.differences[-1] == FieldDiff("zz", [(1, [A]), (None, [B])])


def test_a_tombstone_differs_first_in_deleted() -> None:
    view = only(reconcile([found(A, ALIEN_DELETED), found(B, ALIEN_RATED)]))
    assert view.state == "stale"
    assert view.newest == ALIEN_DELETED
    assert view.live  # B still holds it undeleted
    assert view.differences[0] == FieldDiff("deleted", [(True, [A]), (None, [B])])


def test_deleted_everywhere_is_not_live() -> None:
    view = only(reconcile([found(A, ALIEN_DELETED), found(B, ALIEN_DELETED), found(C)]))
    assert view.state == "agree"
    assert not view.live
    assert view.missing == [C]
    assert view.title == "Alien"  # the record is kept for display


def test_an_extra_field_cannot_be_named_deleted() -> None:
    """So a live copy is never taken for a tombstone when records are compared field by field."""
    with pytest.raises(InvalidMovie, match="deleted"):
        edit(ALIEN_RATED, extra={"deleted": True})


def test_field_differences_of_fewer_than_two_groups() -> None:
    assert field_differences([]) == []
    assert field_differences([Group(ALIEN, [A, B])]) == []


def test_field_differences_without_a_difference() -> None:
    """Different revisions with equal records (a delete and an undelete) show no field."""
    undeleted = child([ALIEN_DELETED], ALIEN_DELETED.movie)
    assert field_differences([Group(undeleted, [A]), Group(ALIEN_RATED, [B])]) == []


# --- properties -----------------------------------------------------------------------------------

# Every revision of two movies, to draw each server's holdings from.
ALIEN_REVISIONS = [ALIEN, ALIEN_RATED, ALIEN_PLOT, ALIEN_LATER, ALIEN_RESOLVED, ALIEN_DELETED]
KONG_REVISIONS = [KONG_1933, delete(KONG_1933), edit(KONG_1933, rating=7.9)]
UNANSWERED = [ReadStatus.UNREACHABLE, ReadStatus.TIMEOUT, ReadStatus.ERROR]


@st.composite
def server_results(draw: st.DrawFn) -> list[ReadResult]:
    """Up to five servers: each answered with at most one copy per movie, or did not answer."""
    count = draw(st.integers(min_value=0, max_value=5))
    results: list[ReadResult] = []
    for server in [A, B, C, D, E][:count]:
        status = draw(st.sampled_from([ReadStatus.FOUND, *UNANSWERED]))
        if status is not ReadStatus.FOUND:
            results.append(failed(server, status))
            continue
        copies = [
            copy
            for revisions in (ALIEN_REVISIONS, KONG_REVISIONS)
            if (copy := draw(st.none() | st.sampled_from(revisions))) is not None
        ]
        results.append(found(server, *sorted(copies, key=lambda c: c.key)))
    return results


def normalized(views: list[MovieView]) -> list[tuple[Any, ...]]:
    """A view with its server lists sorted (their order follows the order of the results)."""
    return [
        (
            v.key,
            [(g.copy.rev, sorted(g.servers)) for g in v.groups],
            sorted(v.missing),
            v.state,
            [(d.field, [(value, sorted(h)) for value, h in d.values]) for d in v.differences],
        )
        for v in views
    ]


@given(st.data())
def test_reconcile_does_not_depend_on_the_order_of_results(data: st.DataObject) -> None:
    results = data.draw(server_results())
    shuffled = data.draw(st.permutations(results))
    assert normalized(reconcile(shuffled)) == normalized(reconcile(results))


@given(server_results())
def test_every_answering_server_is_a_holder_or_missing_exactly_once(
    results: list[ReadResult],
) -> None:
    answered = [r.server for r in results if r.answered]
    views = reconcile(results)
    keys = {c.key for r in results if r.answered for c in r.copies}
    assert [v.key for v in views] == sorted(keys)
    for view in views:
        holders = [s for g in view.groups for s in g.servers]
        assert sorted(holders + view.missing) == sorted(answered)
        for diff in view.differences:  # each field's values split the holders once more
            assert sorted(s for _, h in diff.values for s in h) == sorted(holders)
            assert len(diff.values) > 1


@given(server_results())
def test_groups_are_ordered_and_the_state_matches_them(results: list[ReadResult]) -> None:
    for view in reconcile(results):
        order = [(-generation(g.copy.rev), -len(g.servers)) for g in view.groups]
        assert order == sorted(order)
        assert len({g.copy.rev for g in view.groups}) == len(view.groups)
        assert (view.state == "agree") == (len(view.groups) == 1)
        if view.state == "conflict":
            assert view.newest is None
        else:  # the newest supersedes the rest, so it has the highest generation: first
            assert view.newest == view.groups[0].copy
        assert view.live == any(not g.copy.deleted for g in view.groups)
