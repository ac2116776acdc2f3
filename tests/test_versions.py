"""Revisions and histories: which copy supersedes which, and what a server does with a write."""

from __future__ import annotations

import itertools
import re
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moviedb.model import MAX_YEAR, MIN_YEAR, Movie, canonical_bytes, key_of, validate
from moviedb.versions import (
    HISTORY_LIMIT,
    Copy,
    Decision,
    Relation,
    child,
    compare,
    decide,
    first_copy,
    generation,
    newest,
)

REV = re.compile(r"[1-9][0-9]*-[0-9a-f]{16}")


def movie(title: str = "Alien", year: int | None = 1979, **fields: Any) -> Movie:
    return validate(Movie(title=title, year=year, **fields))


def edit(parent: Copy, **fields: Any) -> Copy:
    return child([parent], validate(msgspec.structs.replace(parent.movie, **fields)))


def chain(start: Copy, length: int) -> list[Copy]:
    """`start` and `length` successive edits of it, oldest first."""
    copies = [start]
    for n in range(length):
        copies.append(edit(copies[-1], plot=f"{start.rev} edit {n}"))
    return copies


ROOT = first_copy(movie())


# --- first copies -------------------------------------------------------------------------------


def test_first_copy() -> None:
    alien = movie(director="Ridley Scott")
    copy = first_copy(alien, now=1234.5)
    assert copy.key == key_of(alien)
    assert copy.movie == alien
    assert REV.fullmatch(copy.rev)
    assert generation(copy.rev) == 1
    assert copy.history == []
    assert copy.deleted is False
    assert copy.written_at == 1234.5


def test_first_copy_revision_is_stable() -> None:
    # The example in docs/protocol.md: any client, any version, computes this same revision.
    assert first_copy(Movie(title="Alien", year=1979)).rev == "1-53117294e52fb071"


def test_equal_records_added_independently_agree() -> None:
    a = first_copy(movie(rating=8.5), now=1.0)
    b = first_copy(movie(rating=8.5), now=2.0)  # the clock never matters
    assert a.rev == b.rev
    assert compare(a, b) is Relation.SAME
    assert decide(a, b) is Decision.SAME


def test_different_records_added_independently_conflict() -> None:
    a = first_copy(movie(rating=8.5))
    b = first_copy(movie(rating=8.4))
    assert a.key == b.key
    assert a.rev != b.rev
    assert compare(a, b) is Relation.CONFLICT
    assert compare(b, a) is Relation.CONFLICT
    assert decide(a, b) is Decision.CONFLICT


@pytest.mark.parametrize(("rev", "gen"), [("1-0123456789abcdef", 1), ("42-ffffffffffffffff", 42)])
def test_generation(rev: str, gen: int) -> None:
    assert generation(rev) == gen


# --- children -----------------------------------------------------------------------------------


def test_child_of_one_parent() -> None:
    parent = first_copy(movie())
    kid = edit(parent, rating=8.5)
    assert kid.key == parent.key
    assert generation(kid.rev) == 2
    assert kid.history == [parent.rev]
    assert kid.deleted is False
    assert compare(kid, parent) is Relation.NEWER
    assert compare(parent, kid) is Relation.OLDER


def test_grandchild_history_is_newest_first() -> None:
    copies = chain(ROOT, 3)
    tip = copies[-1]
    assert generation(tip.rev) == 4
    assert tip.history == [c.rev for c in reversed(copies[:-1])]
    for ancestor in copies[:-1]:
        assert compare(tip, ancestor) is Relation.NEWER


def test_the_same_edit_of_the_same_parent_gives_the_same_revision() -> None:
    a = child([ROOT], movie(rating=8.5), now=10.0)
    b = child([ROOT], movie(rating=8.5), now=99.0)
    assert a.rev == b.rev
    assert a.history == b.history
    assert decide(a, b) is Decision.SAME


def test_the_same_record_under_different_parents_differs() -> None:
    other_parent = first_copy(movie(plot="other"))
    assert child([ROOT], movie(rating=1.0)).rev != child([other_parent], movie(rating=1.0)).rev


def test_child_may_change_how_the_title_is_written() -> None:
    kid = child([ROOT], movie(title="ALIEN"))
    assert kid.key == ROOT.key
    assert kid.movie.title == "ALIEN"


@pytest.mark.parametrize(
    "other", [movie(title="Aliens"), movie(year=1986), movie(year=None)], ids=str
)
def test_child_keeps_the_identity(other: Movie) -> None:
    with pytest.raises(ValueError, match="identity"):
        child([ROOT], other)


def test_parents_of_different_movies_have_no_common_child() -> None:
    aliens = first_copy(movie(title="Aliens", year=1986))
    with pytest.raises(ValueError, match="identity"):
        child([ROOT, aliens], movie())


def test_child_without_parents_is_a_first_copy() -> None:
    assert child([], movie(), now=5.0) == first_copy(movie(), now=5.0)


# --- resolutions (several parents) --------------------------------------------------------------


def test_two_edits_of_one_parent_conflict() -> None:
    a = edit(ROOT, rating=8.5)
    b = edit(ROOT, rating=8.4)
    assert compare(a, b) is Relation.CONFLICT
    assert compare(b, a) is Relation.CONFLICT
    assert decide(a, b) is Decision.CONFLICT
    assert newest([a, b]) is None


def test_a_resolution_supersedes_every_branch() -> None:
    a = edit(ROOT, rating=8.5)
    b = edit(ROOT, rating=8.4)
    c = edit(edit(ROOT, plot="x"), plot="y")
    resolved = child([a, b, c], movie(rating=8.45))
    assert generation(resolved.rev) == 4
    assert set(resolved.history) == {a.rev, b.rev, c.rev, ROOT.rev, *c.history}
    for branch in (a, b, c, ROOT):
        assert compare(resolved, branch) is Relation.NEWER
        assert decide(branch, resolved) is Decision.APPLY
        assert decide(resolved, branch) is Decision.STALE
    assert newest([a, resolved, b, c]) == resolved


def test_a_resolution_does_not_depend_on_the_order_of_its_parents() -> None:
    a = edit(ROOT, rating=8.5)
    b = edit(ROOT, rating=8.4)
    assert child([a, b], movie()) == child([b, a], movie())


def test_a_resolution_supersedes_a_branch_far_behind() -> None:
    # One branch was edited many more times than the history holds; the other stayed at
    # generation 2. The resolution must still list (and so supersede) the short branch.
    long = chain(ROOT, HISTORY_LIMIT + 10)[-1]
    short = edit(ROOT, rating=1.0)
    resolved = child([long, short], movie(rating=5.0))
    assert len(resolved.history) <= HISTORY_LIMIT
    assert compare(resolved, long) is Relation.NEWER
    assert compare(resolved, short) is Relation.NEWER
    assert decide(short, resolved) is Decision.APPLY
    generations = [generation(r) for r in resolved.history]
    assert generations == sorted(generations, reverse=True)


def test_a_resolution_of_more_branches_than_the_history_holds_stays_within_the_limit() -> None:
    branches = [edit(ROOT, rating=n / 10) for n in range(HISTORY_LIMIT + 5)]
    resolved = child(branches, movie(rating=5.0))
    assert len(resolved.history) == HISTORY_LIMIT  # what a server accepts
    assert set(resolved.history) <= {b.rev for b in branches}


# --- tombstones ---------------------------------------------------------------------------------


def test_a_tombstone_is_a_child() -> None:
    live = edit(ROOT, rating=8.5)
    dead = child([live], live.movie, deleted=True)
    assert dead.deleted is True
    assert dead.movie == live.movie  # kept for display
    assert dead.rev != child([live], live.movie).rev  # the flag is part of the revision
    assert compare(dead, live) is Relation.NEWER
    assert decide(live, dead) is Decision.APPLY


def test_a_server_that_missed_the_delete_cannot_bring_the_movie_back() -> None:
    dead = child([ROOT], ROOT.movie, deleted=True)
    assert decide(dead, ROOT) is Decision.STALE
    assert decide(dead, first_copy(ROOT.movie)) is Decision.STALE  # a fresh `add` of the same


def test_adding_again_after_a_delete_supersedes_the_tombstone() -> None:
    dead = child([ROOT], ROOT.movie, deleted=True)
    again = child([dead], ROOT.movie)
    assert again.deleted is False
    assert decide(dead, again) is Decision.APPLY


def test_a_tombstone_without_parent() -> None:
    dead = child([], movie(), deleted=True)
    assert dead.deleted is True
    assert dead.key == ROOT.key
    assert generation(dead.rev) == 1
    assert dead.history == []
    assert dead.rev != ROOT.rev
    assert compare(dead, ROOT) is Relation.CONFLICT


# --- decide -------------------------------------------------------------------------------------


def test_decide_table() -> None:
    older = ROOT
    newer = edit(ROOT, rating=8.5)
    concurrent = edit(ROOT, rating=8.4)
    assert decide(None, older) is Decision.APPLY
    assert decide(None, child([older], older.movie, deleted=True)) is Decision.APPLY
    assert decide(older, older) is Decision.SAME
    assert decide(older, newer) is Decision.APPLY
    assert decide(newer, older) is Decision.STALE
    assert decide(newer, concurrent) is Decision.CONFLICT


def test_wire_values() -> None:
    # PutResult.status carries these strings (docs/protocol.md).
    assert [d.value for d in Decision] == ["applied", "same", "stale", "conflict"]
    assert [r.value for r in Relation] == ["same", "newer", "older", "conflict"]


# --- the history limit --------------------------------------------------------------------------


def test_history_is_cut_at_the_limit() -> None:
    copies = chain(ROOT, HISTORY_LIMIT + 20)
    tip = copies[-1]
    assert len(tip.history) == HISTORY_LIMIT
    assert tip.history == [c.rev for c in reversed(copies[-1 - HISTORY_LIMIT : -1])]
    assert generation(tip.rev) == HISTORY_LIMIT + 21


def test_a_copy_just_inside_the_limit_is_stale_and_one_outside_conflicts() -> None:
    copies = chain(ROOT, HISTORY_LIMIT + 5)
    tip = copies[-1]
    inside = copies[-1 - HISTORY_LIMIT]
    outside = copies[-2 - HISTORY_LIMIT]
    assert decide(tip, inside) is Decision.STALE
    # The safe direction: a person sees an apparent conflict, nothing is lost silently.
    assert decide(tip, outside) is Decision.CONFLICT


def test_history_below_the_limit_is_complete() -> None:
    tip = chain(ROOT, HISTORY_LIMIT)[-1]
    assert len(tip.history) == HISTORY_LIMIT
    assert tip.history[-1] == ROOT.rev


# --- newest -------------------------------------------------------------------------------------


def test_newest() -> None:
    a, b, c = chain(ROOT, 2)
    assert newest([]) is None
    assert newest([a]) == a
    assert newest([a, c, b]) == c
    assert newest([c, b, a]) == c
    assert newest([b, b]) == b


def test_newest_is_none_when_any_two_conflict() -> None:
    left = edit(ROOT, rating=1.0)
    right = edit(ROOT, rating=2.0)
    assert newest([ROOT, left, right]) is None
    assert newest([right, ROOT, left]) is None
    # An older copy behind the first winner does not hide a later conflict.
    assert newest([ROOT, edit(left, plot="x"), right]) is None


def test_newest_ignores_branches_already_resolved() -> None:
    left = edit(ROOT, rating=1.0)
    right = edit(ROOT, rating=2.0)
    resolved = child([left, right], movie(rating=1.5))
    for order in itertools.permutations([ROOT, left, right, resolved]):
        assert newest(list(order)) == resolved


# --- properties over random histories -----------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn, max_nodes: int = 10) -> tuple[list[Copy], dict[str, set[str]]]:
    """Copies of one movie made by edits, deletes and resolutions of earlier copies, with the
    true ancestry of each (rev -> revs it descends from). Every record is different."""
    base = Movie(title="Alien", year=1979)
    copies = [first_copy(validate(msgspec.structs.replace(base, plot="n0")))]
    ancestors: dict[str, set[str]] = {copies[0].rev: set()}
    for n in range(1, draw(st.integers(1, max_nodes))):
        parents = draw(
            st.lists(st.sampled_from(copies), min_size=1, max_size=3, unique_by=lambda c: c.rev)
        )
        record = validate(msgspec.structs.replace(base, plot=f"n{n}"))
        kid = child(parents, record, deleted=draw(st.booleans()))
        copies.append(kid)
        ancestors[kid.rev] = set().union(*({p.rev} | ancestors[p.rev] for p in parents))
    return copies, ancestors


@given(histories())
@settings(max_examples=150)
def test_a_child_supersedes_every_parent_and_ancestor(
    history: tuple[list[Copy], dict[str, set[str]]],
) -> None:
    copies, ancestors = history
    for x, y in itertools.product(copies, copies):
        expected = (
            Relation.SAME
            if x.rev == y.rev
            else Relation.NEWER
            if y.rev in ancestors[x.rev]
            else Relation.OLDER
            if x.rev in ancestors[y.rev]
            else Relation.CONFLICT
        )
        assert compare(x, y) is expected


@given(histories())
@settings(max_examples=100)
def test_compare_is_antisymmetric(history: tuple[list[Copy], dict[str, set[str]]]) -> None:
    copies, _ = history
    mirror = {
        Relation.SAME: Relation.SAME,
        Relation.NEWER: Relation.OLDER,
        Relation.OLDER: Relation.NEWER,
        Relation.CONFLICT: Relation.CONFLICT,
    }
    for x, y in itertools.product(copies, copies):
        assert compare(y, x) is mirror[compare(x, y)]
        assert (compare(x, y) is Relation.SAME) is (x.rev == y.rev)


@given(histories())
@settings(max_examples=100)
def test_decide_a_copy_against_itself_is_same(
    history: tuple[list[Copy], dict[str, set[str]]],
) -> None:
    copies, _ = history
    for copy in copies:
        assert decide(copy, copy) is Decision.SAME
        assert decide(copy, msgspec.structs.replace(copy, written_at=copy.written_at + 1)) is (
            Decision.SAME
        )
        assert decide(None, copy) is Decision.APPLY


@given(histories(), st.data())
@settings(max_examples=100)
def test_a_resolution_of_any_copies_supersedes_them_all(
    history: tuple[list[Copy], dict[str, set[str]]], data: st.DataObject
) -> None:
    copies, _ = history
    branches = data.draw(
        st.lists(st.sampled_from(copies), min_size=1, max_size=4, unique_by=lambda c: c.rev)
    )
    resolved = child(branches, movie(plot="resolved"))
    for branch in branches:
        assert compare(resolved, branch) is Relation.NEWER
        assert decide(branch, resolved) is Decision.APPLY
    assert newest([*branches, resolved]) == resolved


@given(histories(), st.data())
@settings(max_examples=100)
def test_newest_is_a_copy_that_supersedes_or_equals_all_others(
    history: tuple[list[Copy], dict[str, set[str]]], data: st.DataObject
) -> None:
    copies, ancestors = history
    chosen = data.draw(st.lists(st.sampled_from(copies), max_size=6))
    shuffled = data.draw(st.permutations(chosen))
    best = newest(chosen)
    top = [c for c in chosen if all(o.rev == c.rev or o.rev in ancestors[c.rev] for o in chosen)]
    if top:
        assert best is not None
        assert best.rev == top[0].rev
    else:
        assert best is None
    # The order in which the copies are given never matters.
    assert newest(shuffled) == best


@given(histories(), st.data())
@settings(max_examples=100)
def test_any_order_of_applying_writes_ends_in_the_same_state(
    history: tuple[list[Copy], dict[str, set[str]]], data: st.DataObject
) -> None:
    copies, _ = history
    writes = data.draw(st.lists(st.sampled_from(copies), min_size=1, max_size=8))
    winner = newest(writes)
    for order in (writes, data.draw(st.permutations(writes)), list(reversed(writes))):
        stored: Copy | None = None
        for write in order:
            if decide(stored, write) is Decision.APPLY:
                stored = write
        assert stored is not None
        if winner is not None:
            assert stored.rev == winner.rev


@given(st.integers(0, 3 * HISTORY_LIMIT), st.integers(0, 3 * HISTORY_LIMIT))
@settings(max_examples=40)
def test_a_resolution_supersedes_branches_of_any_length(left_len: int, right_len: int) -> None:
    left = chain(edit(ROOT, rating=1.0), left_len)[-1]
    right = chain(edit(ROOT, rating=2.0), right_len)[-1]
    resolved = child([left, right], movie(rating=1.5))
    assert len(resolved.history) <= HISTORY_LIMIT
    assert compare(resolved, left) is Relation.NEWER
    assert compare(resolved, right) is Relation.NEWER
    assert generation(resolved.rev) == max(left_len, right_len) + 3


# --- revisions: properties -----------------------------------------------------------------------

movies = st.builds(
    Movie,
    title=st.sampled_from(["Alien", "ALIEN", "alien", "Aliens"]),
    year=st.none() | st.integers(MIN_YEAR, MAX_YEAR),
    director=st.none() | st.text(max_size=10).filter(lambda t: "\x00" not in t),
    rating=st.none() | st.floats(0, 10),
    cast=st.lists(st.text(max_size=5).filter(lambda t: "\x00" not in t), max_size=3),
).map(validate)


@given(movies, st.booleans(), st.floats(allow_nan=False), st.floats(allow_nan=False))
def test_revision_is_deterministic(record: Movie, deleted: bool, t1: float, t2: float) -> None:
    a = child([], record, deleted=deleted, now=t1)
    b = child([], validate(msgspec.structs.replace(record)), deleted=deleted, now=t2)
    assert a.rev == b.rev
    assert REV.fullmatch(a.rev)
    parent = first_copy(movie(plot="parent"))
    if a.key == parent.key:
        assert child([parent], record, now=t1).rev == child([parent], record, now=t2).rev


@given(movies, movies, st.booleans(), st.booleans())
def test_revision_differs_for_different_content(
    m1: Movie, m2: Movie, deleted1: bool, deleted2: bool
) -> None:
    a = child([], m1, deleted=deleted1)
    b = child([], m2, deleted=deleted2)
    same_content = canonical_bytes(m1) == canonical_bytes(m2) and deleted1 == deleted2
    assert (a.rev == b.rev) is same_content


plots = st.text(min_size=1, max_size=10).filter(lambda t: "\x00" not in t)


@given(movies, st.lists(plots, min_size=2, max_size=2, unique=True))
def test_two_independent_children_of_one_parent_conflict(base: Movie, texts: list[str]) -> None:
    parent = first_copy(base)
    one, two = (child([parent], validate(msgspec.structs.replace(base, plot=t))) for t in texts)
    assert compare(one, two) is Relation.CONFLICT
    assert compare(two, one) is Relation.CONFLICT
    assert decide(one, two) is Decision.CONFLICT
    merged = child([one, two], base)
    for superseded in (one, two, parent):
        assert compare(merged, superseded) is Relation.NEWER
        assert decide(superseded, merged) is Decision.APPLY
