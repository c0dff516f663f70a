"""Property tests of the dependency value types in ``slurmscope.dependency``.

``merge`` (order kept, duplicates dropped, first provenance wins), ``render``/``parse``
(Slurm's ``--dependency`` syntax), ``check_kind`` and ``clauses_for_part``. Job handles for
``clauses_for_part`` are real ``Job``/``ArrayJob`` objects over a hand-made ``Submission``
(nothing is submitted: the function only reads their scheduler ids).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import slurmscope
from slurmscope.dependency import (
    KINDS,
    VIA_AFTER_ARGUMENT,
    VIA_AFTER_METHOD,
    VIA_DATA_ARGUMENT,
    VIA_SCOPE,
    CallSite,
    Dependency,
    Provenance,
    check_kind,
    merge,
    parse,
    render,
)
from slurmscope.errors import DependencyError, InvalidInputError
from slurmscope.jobs import ArrayJob, Job
from slurmscope.submission import Part, Submission
from slurmscope.submit import clauses_for_part

SETTINGS = settings(max_examples=150, deadline=None)

kinds = st.sampled_from(KINDS)
vias = st.sampled_from((VIA_SCOPE, VIA_AFTER_METHOD, VIA_AFTER_ARGUMENT, VIA_DATA_ARGUMENT))
# A small pool of targets so that duplicates are frequent.
target_ids = st.sampled_from(("1", "2", "3", "12_0", "12_7", "40+41"))


@st.composite
def dependency_lists(draw: st.DrawFn) -> list[Dependency]:
    """Dependencies whose provenance is unique (``site.line`` is the position)."""
    raw = draw(st.lists(st.tuples(kinds, target_ids, vias, st.integers(1, 5)), max_size=25))
    out = []
    for position, (kind, target, via, depth) in enumerate(raw):
        target_id = None if kind == "singleton" else target
        site = CallSite("user.py", position, "fn", f"thread-{position % 3}")
        out.append(Dependency(kind, target_id, Provenance(via, site, depth=depth)))
    return out


# -- merge ------------------------------------------------------------------------------------
@SETTINGS
@given(dependency_lists())
def test_merge_keeps_first_of_each_key_in_order(deps: list[Dependency]) -> None:
    kept, dropped = merge(deps)

    firsts: dict[tuple[str, str | None], Dependency] = {}
    for dep in deps:
        firsts.setdefault(dep.key, dep)
    # order kept, duplicates dropped, first provenance (the very object) kept
    assert [d.key for d in kept] == list(firsts)
    assert all(k is firsts[k.key] for k in kept)
    assert len({d.key for d in kept}) == len(kept)


@SETTINGS
@given(dependency_lists())
def test_merge_dropped_are_exactly_the_later_duplicates(deps: list[Dependency]) -> None:
    kept, dropped = merge(deps)
    seen: set[tuple[str, str | None]] = set()
    later = []
    for dep in deps:
        if dep.key in seen:
            later.append(dep)
        seen.add(dep.key)
    assert len(dropped) == len(later)
    assert all(a is b for a, b in zip(dropped, later, strict=True))
    assert len(kept) + len(dropped) == len(deps)
    # every dropped one duplicates a kept one, whose provenance came earlier
    position = {id(d): i for i, d in enumerate(deps)}
    by_key = {k.key: k for k in kept}
    for dup in dropped:
        assert position[id(by_key[dup.key])] < position[id(dup)]


@SETTINGS
@given(dependency_lists())
def test_merge_is_idempotent(deps: list[Dependency]) -> None:
    kept, _ = merge(deps)
    again, dropped_again = merge(kept)
    assert dropped_again == []
    assert all(a is b for a, b in zip(again, kept, strict=True)) and len(again) == len(kept)
    # merging the input twice over, or kept + dropped, changes nothing that is kept
    twice, _ = merge(deps + deps)
    assert all(a is b for a, b in zip(twice, kept, strict=True)) and len(twice) == len(kept)


@SETTINGS
@given(dependency_lists())
def test_merge_accepts_any_iterable(deps: list[Dependency]) -> None:
    from_list = merge(deps)
    from_gen = merge(d for d in deps)
    assert [id(d) for d in from_list[0]] == [id(d) for d in from_gen[0]]
    assert [id(d) for d in from_list[1]] == [id(d) for d in from_gen[1]]


@SETTINGS
@given(dependency_lists())
def test_dependency_equality_ignores_provenance(deps: list[Dependency]) -> None:
    for a, b in itertools.product(deps[:6], repeat=2):
        assert (a == b) == (a.key == b.key)


@SETTINGS
@given(dependency_lists())
def test_dependency_json_round_trip(deps: list[Dependency]) -> None:
    for dep in deps:
        back = Dependency.from_json(dep.to_json())
        assert back.key == dep.key
        assert back.provenance == dep.provenance


# -- render / parse ---------------------------------------------------------------------------
job_ids = st.one_of(
    st.integers(1, 10**7).map(str),
    st.tuples(st.integers(1, 10**7), st.integers(0, 1000)).map(lambda t: f"{t[0]}_{t[1]}"),
)
clauses = st.lists(st.tuples(kinds, st.lists(job_ids, max_size=4).map(tuple)), max_size=6).map(
    tuple
)


@SETTINGS
@given(clauses)
def test_parse_inverts_render(cl: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
    text = render(cl)
    assert parse(text) == cl
    assert render(parse(text)) == text


@SETTINGS
@given(clauses)
def test_render_is_slurm_syntax(cl: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
    text = render(cl)
    assert " " not in text
    if not cl:
        assert text == ""
        return
    pieces = text.split(",")
    assert len(pieces) == len(cl)
    for piece, (kind, ids) in zip(pieces, cl, strict=True):
        assert piece == (f"{kind}:{':'.join(ids)}" if ids else kind)


@SETTINGS
@given(
    clauses,
    st.sampled_from(("", " ", "  ")),
    st.lists(st.sampled_from(("unfulfilled", "failed", "completed")), min_size=1),
)
def test_parse_tolerates_spaces_and_squeue_state_suffixes(
    cl: tuple[tuple[str, tuple[str, ...]], ...], space: str, states: list[str]
) -> None:
    """squeue shows ``afterok:12(unfulfilled)``; spacing after commas is harmless."""
    suffixes = itertools.cycle(states)
    text = ("," + space).join(
        ":".join((kind, *(f"{i}({next(suffixes)})" for i in ids))) for kind, ids in cl
    )
    assert parse(space + text + space) == cl


@pytest.mark.parametrize("blank", ["", " ", "\t", "\n "])
def test_parse_blank_is_no_dependency(blank: str) -> None:
    assert parse(blank) == ()


# -- check_kind -------------------------------------------------------------------------------
@SETTINGS
@given(
    st.one_of(
        st.text(max_size=12),
        st.sampled_from(
            [k.upper() for k in KINDS]
            + [k + " " for k in KINDS]
            + ["after_ok", "afterOK", "expand", "aftercorr:"]
        ),
    ).filter(lambda s: s not in KINDS)
)
def test_check_kind_rejects_unknown_kinds(kind: str) -> None:
    with pytest.raises(DependencyError) as info:
        check_kind(kind)
    message = str(info.value)
    assert repr(kind) in message
    assert all(k in message for k in KINDS)
    # DependencyError is an InvalidInputError (and so a ValueError) for callers
    assert isinstance(info.value, InvalidInputError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("kind", KINDS)
def test_check_kind_accepts_every_slurm_kind(kind: str) -> None:
    assert check_kind(kind) == kind


@SETTINGS
@given(
    st.text(max_size=12).filter(
        lambda s: s.strip() not in KINDS and s.strip() != "" and "," not in s and ":" not in s
    ),
    st.lists(job_ids, max_size=3),
)
def test_parse_rejects_unknown_kinds(kind: str, ids: list[str]) -> None:
    with pytest.raises(DependencyError):
        parse(":".join([kind.strip(), *ids]))
    with pytest.raises(DependencyError):
        parse(f"afterok:1,{':'.join([kind.strip(), *ids])}")


@pytest.fixture(scope="module")
def idle_cluster(tmp_path_factory: pytest.TempPathFactory):
    cluster = slurmscope.Cluster(
        "local", root=tmp_path_factory.mktemp("idle"), set_as_default=False
    )
    yield cluster
    cluster.close()


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=10).filter(lambda s: s not in KINDS))
def test_public_api_rejects_unknown_kinds(idle_cluster, kind: str) -> None:
    with pytest.raises(DependencyError):
        idle_cluster.dependencies(kind=kind)
    with pytest.raises(DependencyError):
        slurmscope.depend(None, kind=kind)
    with pytest.raises(DependencyError):
        idle_cluster.task(abs).after(kind=kind)


# -- clauses_for_part -------------------------------------------------------------------------
_ids = itertools.count(100)


def _submission(size: int, is_array: bool, n_parts: int) -> Submission:
    parts = []
    per = max(1, size // n_parts) if is_array else 1
    offset = 0
    for number in range(n_parts):
        count = per if number < n_parts - 1 else max(1, size - offset)
        parts.append(Part(str(next(_ids)), offset, count))
        offset += count
    total = offset if is_array else 1
    return Submission(None, "t", total, is_array, parts, ())  # type: ignore[arg-type]


@st.composite
def targets_and_deps(draw: st.DrawFn) -> tuple[int, int, list[Dependency]]:
    """Real handles: single jobs, array elements and arrays of ``n_parts`` parts."""
    n_parts = draw(st.integers(1, 3))
    part = draw(st.integers(0, n_parts - 1))
    pool: list[Job | ArrayJob] = []
    arrays: list[ArrayJob] = []
    for _ in range(draw(st.integers(1, 3))):
        pool.append(Job(_submission(1, False, 1), None))  # type: ignore[arg-type]
    for _ in range(draw(st.integers(1, 3))):
        array = ArrayJob(_submission(draw(st.integers(n_parts, 3 * n_parts)), True, n_parts), None)  # type: ignore[arg-type]
        arrays.append(array)
        pool.append(array)
        pool.append(array[draw(st.integers(0, len(array) - 1))])
    deps = []
    site = CallSite("user.py", 1, "fn", "MainThread")
    for kind in draw(st.lists(kinds, max_size=12)):
        if kind == "singleton":
            target = None
        elif kind == "aftercorr":
            target = draw(st.sampled_from(arrays))
        else:
            target = draw(st.sampled_from(pool))
        target_id = None if target is None else target.target_id
        deps.append(Dependency(kind, target_id, Provenance(VIA_SCOPE, site, depth=1), target))
    return n_parts, part, deps


def _scheduler_ids(target: Job | ArrayJob) -> tuple[str, ...]:
    if isinstance(target, ArrayJob):
        return target.job_ids
    return (target.job_id,)


@SETTINGS
@given(targets_and_deps())
def test_clauses_for_part(case: tuple[int, int, list[Dependency]]) -> None:
    n_parts, part, deps = case
    result = clauses_for_part(deps, part)

    # one clause per kind, kinds in order of first appearance
    assert [k for k, _ in result] == list(dict.fromkeys(d.kind for d in deps))
    for kind, ids in result:
        assert len(set(ids)) == len(ids), "an id repeated within a clause"
        of_kind = [d for d in deps if d.kind == kind]
        if kind == "singleton":
            assert ids == ()
            continue
        if kind == "aftercorr":
            wanted = [d.target.job_ids[part] for d in of_kind]
        elif kind == "after":  # whole arrays task by task, every part
            wanted = [
                i
                for d in of_kind
                for i in (
                    [j.job_id for j in d.target]
                    if isinstance(d.target, ArrayJob)
                    else [d.target.job_id]
                )
            ]
        else:
            wanted = [i for d in of_kind for i in _scheduler_ids(d.target)]
        assert list(ids) == list(dict.fromkeys(wanted))
        # every id is something the scheduler knows: never an "a+b" handle id
        assert all("+" not in i for i in ids)
    # Slurm syntax round trip
    assert parse(render(result)) == result


@SETTINGS
@given(targets_and_deps())
def test_clauses_for_part_depend_on_part_only_through_aftercorr(
    case: tuple[int, int, list[Dependency]],
) -> None:
    n_parts, _, deps = case
    by_part = [dict(clauses_for_part(deps, p)) for p in range(n_parts)]
    for kind in by_part[0]:
        if kind != "aftercorr":
            assert all(bp[kind] == by_part[0][kind] for bp in by_part)
    if any(d.kind == "aftercorr" for d in deps):
        # part p of the submission pairs with part p of every aftercorr target
        all_parts = set()
        for p, bp in enumerate(by_part):
            expected = {d.target.job_ids[p] for d in deps if d.kind == "aftercorr"}
            assert set(bp["aftercorr"]) == expected
            all_parts |= set(bp["aftercorr"])
        assert len(all_parts) == n_parts * len(
            {id(d.target.submission) for d in deps if d.kind == "aftercorr"}
        )


@SETTINGS
@given(targets_and_deps())
def test_clauses_for_part_unchanged_by_merging(case: tuple[int, int, list[Dependency]]) -> None:
    _, part, deps = case
    kept, _ = merge(deps)
    assert clauses_for_part(kept, part) == clauses_for_part(deps, part)
    assert clauses_for_part(deps + deps, part) == clauses_for_part(deps, part)
