"""Convergence of the sync planner (pure): any interleaving of the same writes across servers
ends, after sync, in identical catalogs wherever no conflict exists; conflicts stay visible and
are never decided; a second sync plans nothing; a resolution then converges everything.

Servers are simulated as dicts applying `versions.decide`, the server's own rule, so this tests
the client's planning (reconcile + plan) against the storage rule without any I/O.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from moviedb.client.address import Address
from moviedb.client.cluster import ReadResult, ReadStatus
from moviedb.client.reconcile import reconcile
from moviedb.client.sync import plan
from moviedb.model import Movie, validate
from moviedb.versions import Copy, Decision, child, decide, first_copy

SERVERS = [Address("127.0.0.1", 7001 + i) for i in range(3)]
TITLES = ["Alien", "Heat", "Solaris"]

Catalog = dict[str, Copy]


def apply(catalog: Catalog, copy: Copy) -> Decision:
    decision = decide(catalog.get(copy.key), copy)
    if decision is Decision.APPLY:
        catalog[copy.key] = copy
    return decision


def read_all(catalogs: dict[Address, Catalog]) -> list[ReadResult]:
    return [
        ReadResult(
            s,
            ReadStatus.FOUND if c else ReadStatus.MISSING,
            sorted(c.values(), key=lambda x: x.key),
        )
        for s, c in catalogs.items()
    ]


def sync(catalogs: dict[Address, Catalog]) -> tuple[int, list[str]]:
    """One sync round; returns the number of writes applied and the keys in conflict."""
    the_plan = plan(reconcile(read_all(catalogs)))
    applied = 0
    for server, copies in the_plan.writes.items():
        for copy in copies:
            applied += apply(catalogs[server], copy) is Decision.APPLY
    return applied, [v.key for v in the_plan.conflicts]


# An operation: (server index, title index, kind, text) — an edit/delete/add made through one
# server, built on whatever that server holds (what a client talking to it alone would do).
operations = st.lists(
    st.tuples(
        st.integers(0, len(SERVERS) - 1),
        st.integers(0, len(TITLES) - 1),
        st.sampled_from(["add", "edit", "delete", "sync"]),
        st.sampled_from(["a", "b", "c"]),
    ),
    max_size=25,
)


def run(ops: list[tuple[int, int, str, str]]) -> dict[Address, Catalog]:
    catalogs: dict[Address, Catalog] = {s: {} for s in SERVERS}
    for server_index, title_index, kind, text in ops:
        if kind == "sync":
            sync(catalogs)
            continue
        catalog = catalogs[SERVERS[server_index]]
        movie = validate(Movie(title=TITLES[title_index], year=2000, plot=text))
        current = catalog.get(first_copy(movie).key)
        if kind == "add" or current is None:
            copy = child([current], movie) if current is not None else first_copy(movie)
        elif kind == "edit":
            copy = child([current], movie)
        else:
            copy = child([current], current.movie, deleted=True)
        apply(catalog, copy)
    return catalogs


@settings(max_examples=300, deadline=None)
@given(operations)
def test_sync_converges_except_conflicts_which_stay_visible(
    ops: list[tuple[int, int, str, str]],
) -> None:
    catalogs = run(ops)
    _, conflicts = sync(catalogs)
    keys = {k for c in catalogs.values() for k in c}
    for key in keys:
        revs = {c[key].rev if key in c else None for c in catalogs.values()}
        if key in conflicts:
            assert len(revs) > 1  # never decided
        else:
            assert len(revs) == 1, f"{key} did not converge: {revs}"
    applied, again = sync(catalogs)
    assert applied == 0  # a second sync changes nothing
    assert sorted(again) == sorted(conflicts)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_resolving_every_conflict_then_syncing_makes_the_catalogs_identical(
    ops: list[tuple[int, int, str, str]],
) -> None:
    catalogs = run(ops)
    sync(catalogs)
    for view in plan(reconcile(read_all(catalogs))).conflicts:
        branches = [g.copy for g in view.groups]
        resolution = child(branches, branches[0].movie)
        apply(catalogs[SERVERS[0]], resolution)  # written through one server only
    _, conflicts = sync(catalogs)
    assert conflicts == []
    first = catalogs[SERVERS[0]]
    assert all(c == first for c in catalogs.values())


@settings(max_examples=200, deadline=None)
@given(operations, st.permutations(range(len(SERVERS))))
def test_the_result_does_not_depend_on_the_server_order(
    ops: list[tuple[int, int, str, str]], order: list[int]
) -> None:
    """Listing the servers in another order plans the same writes (no server is preferred)."""
    catalogs = run(ops)
    reordered = {SERVERS[i]: catalogs[SERVERS[i]] for i in order}
    a = plan(reconcile(read_all(catalogs)))
    b = plan(reconcile(read_all(reordered)))
    assert {s: sorted(c.rev for c in w) for s, w in a.writes.items()} == {
        s: sorted(c.rev for c in w) for s, w in b.writes.items()
    }
    assert sorted(v.key for v in a.conflicts) == sorted(v.key for v in b.conflicts)
