"""The concurrency guarantees on the real PostgreSQL: many writers, no lost update.

Run in the PostgreSQL pass: ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/interactive
pytest -m postgres`` (pytest-django creates ``test_interactive``). On SQLite the runner deselects
this module with ``-m "not postgres"``; selected on any other database, every test fails at once.
"""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from sessions_app import protocol, selectors, services
from sessions_app.models import Change, Revision, Session
from sessions_app.protocol import ProtocolError

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 8
PATCHES_PER_THREAD = 25


@pytest.fixture(autouse=True)
def require_postgresql() -> None:
    """Fail loudly, never skip: a PostgreSQL test run on another database proves nothing."""
    if connection.vendor != "postgresql":
        pytest.fail(
            f"tests marked 'postgres' need DATABASE_URL=postgres://...; this run uses {connection.vendor}. "
            "Deselect them with -m 'not postgres' on SQLite.",
            pytrace=False,
        )


def run_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(index)`` in ``count`` threads released together; re-raise the first failure."""
    start = threading.Barrier(count)
    failures: list[BaseException] = []

    def body(index: int) -> None:
        try:
            start.wait()
            work(index)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            failures.append(exc)
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a writer hung"
    if failures:
        raise failures[0]


@pytest.fixture
def editors(django_user_model: Any) -> list[dict[str, Any]]:
    owner = selectors.user_summary(django_user_model.objects.create(username="owner"))
    people = [owner]
    for index in range(1, THREADS):
        people.append(selectors.user_summary(django_user_model.objects.create(username=f"editor{index}")))
    return people


def test_concurrent_patches_on_one_session_never_lose_an_update(editors: list[dict[str, Any]]) -> None:
    owner = editors[0]
    session_id = services.session_create(user=owner, channel_name="", title="Race", data={"items": []}).session_id
    for person in editors[1:]:
        services.member_invite(user=owner, session_id=session_id, username=person["username"], role="editor")

    accepted: list[tuple[str, int]] = []
    conflicts: list[int] = []
    rebased: list[int] = []
    lock = threading.Lock()

    def writer(index: int) -> None:
        user = editors[index]
        version = 0
        for number in range(PATCHES_PER_THREAD):
            item = f"{index}-{number}"
            while True:
                try:
                    outcome = services.session_patch(
                        user=user,
                        channel_name=f"chan-{index}",
                        session_id=session_id,
                        version=version,
                        ops=[{"op": "add", "path": "/items/-", "value": item}],
                    )
                except ProtocolError as exc:
                    # Only a version read by a concurrent writer between this one's read and
                    # its conditional update: appends never collide, they are rebased.
                    assert exc.code == protocol.CONFLICT, exc.message
                    version = exc.data["version"]
                    with lock:
                        conflicts.append(index)
                    continue
                if outcome.data.get("rebased"):
                    assert outcome.data["ops"] == [{"op": "add", "path": "/items/-", "value": item}]
                    with lock:
                        rebased.append(index)
                # The next append is made on this one's version, stale as soon as another lands.
                version = outcome.data["version"]
                with lock:
                    accepted.append((item, version))
                break

    run_threads(THREADS, writer)

    total = THREADS * PATCHES_PER_THREAD
    session = Session.objects.get(pk=session_id)
    items = session.data["items"]
    assert len(accepted) == total
    assert sorted(items) == sorted(item for item, _ in accepted)  # each exactly once
    assert len(set(items)) == total
    assert session.version == total
    assert sorted(version for _, version in accepted) == list(range(1, total + 1))
    log = list(Change.objects.filter(session_id=session_id).order_by("version").values_list("version", "ops"))
    assert [version for version, _ in log] == list(range(1, total + 1))
    # The change log replays to the document: version n appended the item accepted at n.
    by_version = dict((version, item) for item, version in accepted)
    assert [ops[0]["value"] for _, ops in log] == [by_version[v] for v in range(1, total + 1)]
    assert items == [by_version[v] for v in range(1, total + 1)]
    assert rebased, "no patch was stale: the test did not exercise concurrency"


def test_concurrent_counters_with_test_conflict_and_retry_and_never_lose_an_increment(
    editors: list[dict[str, Any]],
) -> None:
    """Each writer increments one counter with ``test`` then ``replace`` (an exact-base guard): a
    stale increment collides (a test on a value changed since), is refused, and is made again on
    the current value; none is lost, none counted twice."""
    owner = editors[0]
    session_id = services.session_create(user=owner, channel_name="", title="Count", data={"n": 0}).session_id
    for person in editors[1:]:
        services.member_invite(user=owner, session_id=session_id, username=person["username"], role="editor")
    conflicts: list[int] = []
    lock = threading.Lock()

    def writer(index: int) -> None:
        version, value = 0, 0
        for _ in range(PATCHES_PER_THREAD):
            while True:
                ops = [
                    {"op": "test", "path": "/n", "value": value},
                    {"op": "replace", "path": "/n", "value": value + 1},
                ]
                try:
                    outcome = services.session_patch(
                        user=editors[index], channel_name="", session_id=session_id, version=version, ops=ops
                    )
                except ProtocolError as exc:
                    assert exc.code == protocol.CONFLICT, exc.message
                    with lock:
                        conflicts.append(index)
                    session = Session.objects.values("version", "data").get(pk=session_id)
                    version, value = session["version"], session["data"]["n"]
                    continue
                assert not outcome.data.get("rebased") or outcome.data["ops"] == ops
                version, value = outcome.data["version"], value + 1
                break

    run_threads(THREADS, writer)
    session = Session.objects.get(pk=session_id)
    assert session.data == {"n": THREADS * PATCHES_PER_THREAD}
    assert session.version == THREADS * PATCHES_PER_THREAD
    assert conflicts, "the writers never collided: the test did not exercise concurrency"


def test_concurrent_saves_get_distinct_revision_numbers(editors: list[dict[str, Any]]) -> None:
    owner = editors[0]
    session_id = services.session_create(user=owner, channel_name="", title="Saves", data={}).session_id
    for person in editors[1:]:
        services.member_invite(user=owner, session_id=session_id, username=person["username"], role="editor")
    numbers: list[int] = []
    lock = threading.Lock()

    def saver(index: int) -> None:
        for _ in range(3):
            outcome = services.revision_create(
                user=editors[index], channel_name="", session_id=session_id, message=f"by {index}"
            )
            with lock:
                numbers.append(outcome.data["revision"])

    run_threads(THREADS, saver)

    assert sorted(numbers) == list(range(1, THREADS * 3 + 1))
    assert sorted(Revision.objects.filter(session_id=session_id).values_list("number", flat=True)) == sorted(numbers)


def test_U0000_is_refused_before_it_reaches_jsonb(editors: list[dict[str, Any]]) -> None:
    owner = editors[0]
    session_id = services.session_create(user=owner, channel_name="", title="Nul", data={"a": ""}).session_id
    with pytest.raises(ProtocolError) as info:
        services.session_patch(
            user=owner,
            channel_name="",
            session_id=session_id,
            version=0,
            ops=[{"op": "replace", "path": "/a", "value": "x\u0000"}],
        )
    assert info.value.code == protocol.INVALID_DATA
    # A literal backslash-u-0000 text is storable in jsonb and must be kept.
    services.session_patch(
        user=owner,
        channel_name="",
        session_id=session_id,
        version=0,
        ops=[{"op": "replace", "path": "/a", "value": "\\u0000"}],
    )
    assert Session.objects.get(pk=session_id).data == {"a": "\\u0000"}


@pytest.mark.parametrize(
    "op",
    [
        {"op": "add", "path": "/b", "value": 1, "x": "\u0000"},
        {"op": "test", "path": "/a", "value": "\u0000"},
        {"op": "add", "path": "/b", "value": 1, "\u0000": True},
    ],
    ids=["extra member", "test value", "extra member name"],
)
def test_U0000_in_any_member_of_an_operation_is_refused_before_it_reaches_the_change_log(
    editors: list[dict[str, Any]], op: dict[str, Any]
) -> None:
    # The document never holds it, but the operation is stored as sent in the change log (jsonb).
    owner = editors[0]
    session_id = services.session_create(user=owner, channel_name="", title="Nul", data={"a": ""}).session_id
    with pytest.raises(ProtocolError) as info:
        services.session_patch(user=owner, channel_name="", session_id=session_id, version=0, ops=[op])
    assert info.value.code == protocol.INVALID_DATA
    assert Change.objects.filter(session_id=session_id).count() == 0
    assert Session.objects.get(pk=session_id).version == 0
