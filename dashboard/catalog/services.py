"""Everything that changes a task or talks to Vionlabs, the same for views, admin actions, jobs and commands.

Each mutation runs in three steps so that no HTTP call happens while a transaction or a row lock is held:

1. a short transaction locks the row, checks that the action is allowed and marks it as under way;
2. the client is called (outside any transaction: `ensure_no_transaction()` enforces it);
3. a short transaction locks the row again and records the answer together with its `TaskEvent`.

An answer is applied only if it is not older than the last one recorded (`last_checked_at`), so a slow answer
never overwrites a newer one. When Vionlabs cannot be reached, the row keeps its last known status, the failure
goes to `sync_error` and `UpstreamHealth`, and the client's error is re-raised for the caller to show.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from dashboard.vionlabs import ItemTask, JsonValue, Link, TaskState
from dashboard.vionlabs.errors import (
    VionlabsError,
    VionlabsNotFound,
    VionlabsRateLimited,
    VionlabsRejected,
    VionlabsUnavailable,
)
from dashboard.vionlabs.redaction import redact

from .client import get_client, interactive_calls, keep_for_settling
from .models import (
    UPSTREAM_NAME,
    CatalogItem,
    EventAction,
    EventSource,
    ItemKind,
    Operation,
    PriorityChoices,
    ProductChoices,
    ProductSetting,
    ProductTask,
    TaskEvent,
    TaskResult,
    TaskStatus,
    UpstreamHealth,
)
from .querysets import OUTCOME_UNKNOWN
from .results import (
    PARAM_PRODUCTS,
    AnyResult,
    ResultParams,
    TaskResultView,
    describe_result_error,
    parse_result,
    raw_of,
    redact_json,
)
from .validators import VERSION_MAX_LENGTH, validate_version

#: Whoever acted: a user, or None for the system.
#: Who asks for an action: a user (the anonymous one counts as nobody), or None for the system.
Actor = User | AnonymousUser | None

logger = logging.getLogger(__name__)

#: A create/deactivate marker older than this belongs to a process that died mid-call: it no longer blocks.
ABANDONED_AFTER = dt.timedelta(minutes=5)
#: Within a request's time budget, the share a create or deactivate may spend before its settling read.
SEND_SHARE = 0.6
#: How stale `UpstreamHealth.last_success_at` may get while Vionlabs keeps answering.
SUCCESS_WRITE_INTERVAL = dt.timedelta(seconds=1)


class ActionRefused(Exception):
    """The action was not sent to Vionlabs; the message says why, in words fit for an operator."""


class TaskAlreadyActive(ActionRefused):
    """The task is pending, processing or done here: creating it again would duplicate it."""


class ActionInProgress(ActionRefused):
    """Another create or deactivate of the same task is under way."""


class NotApplicable(ActionRefused):
    """The product does not apply to the item's kind (ProductSetting.applies_to)."""


class HttpInsideTransaction(RuntimeError):
    """A programming error: code tried to call Vionlabs while holding a database transaction."""


class TaskNotCreated(VionlabsError):
    """A create whose answer was lost was settled by a read: it did not take effect at Vionlabs."""


# --- Guards ---------------------------------------------------------------------------------------------


def ensure_no_transaction() -> None:
    """Raise HttpInsideTransaction if a database transaction is open on the default connection.

    Asked through Django's public API: a durable atomic block refuses to open inside another one. Like Django,
    that check ignores the blocks a test case wraps around each test, which are not ours. Outside any atomic
    block (every call from a worker or a view) nothing is opened: a bulk run calls this twice per item, and an
    empty BEGIN/COMMIT (a write lock on SQLite) each time would cost more than the check is worth.
    """
    if not connection.in_atomic_block:
        return
    try:
        with transaction.atomic(durable=True):
            pass
    except RuntimeError as nested:
        raise HttpInsideTransaction(
            "Refusing to call Vionlabs inside a database transaction: locks would be held for the whole "
            "HTTP round trip. Commit first, call, then record the answer in a new transaction."
        ) from nested


def acting_user(user: Actor) -> User | None:
    """The user to record as having acted: None for the system and for an anonymous request."""
    if user is None or isinstance(user, AnonymousUser) or not user.is_authenticated:
        return None
    return user


#: Set while a caller tries an action again after Vionlabs answered it 429 (see `rate_limit_retry`).
_retrying_rate_limit: ContextVar[bool] = ContextVar("retrying_rate_limit", default=False)


@contextmanager
def rate_limit_retry() -> Iterator[None]:
    """Within this block the caller is trying an action again after a 429: another 429 is noted on the row
    but writes no TaskEvent (its first 429 wrote one), so a 429 storm does not flood the history."""
    token = _retrying_rate_limit.set(True)
    try:
        yield
    finally:
        _retrying_rate_limit.reset(token)


# --- Upstream health ------------------------------------------------------------------------------------


#: When this process last wrote (or found) "healthy": a bulk run's threads succeed hundreds of times a second,
#: and a check per answer would cost one or two queries per item for nothing. monotonic seconds; 0 = unknown.
_healthy_checked_at = 0.0


def record_upstream_success() -> None:
    """Note that Vionlabs answered: clears `failing_since` and the failure count."""
    global _healthy_checked_at
    if time.monotonic() - _healthy_checked_at < SUCCESS_WRITE_INTERVAL.total_seconds():
        return
    now = timezone.now()
    # Every worker succeeds many times a second in a bulk run: skip the write (and its row lock) while the
    # record already says "healthy as of a moment ago".
    needs_write = (
        Q(failing_since__isnull=False)
        | Q(consecutive_failures__gt=0)
        | Q(last_success_at__isnull=True)
        | Q(last_success_at__lt=now - SUCCESS_WRITE_INTERVAL)
    )
    updated = (
        UpstreamHealth.objects.filter(name=UPSTREAM_NAME)
        .filter(needs_write)
        .update(last_success_at=now, failing_since=None, consecutive_failures=0)
    )
    if not updated and not UpstreamHealth.objects.filter(name=UPSTREAM_NAME).exists():
        UpstreamHealth.objects.get_or_create(name=UPSTREAM_NAME, defaults={"last_success_at": now})
    _healthy_checked_at = time.monotonic()


def record_upstream_failure(error: BaseException) -> None:
    """Note that Vionlabs could not be reached (or answered unusably), with the error's text."""
    global _healthy_checked_at
    _healthy_checked_at = 0.0  # the next success is written at once
    now = timezone.now()
    with transaction.atomic():
        health, _ = UpstreamHealth.objects.select_for_update().get_or_create(name=UPSTREAM_NAME)
        health.last_failure_at = now
        health.failing_since = health.failing_since or now
        health.consecutive_failures += 1
        health.last_error = _scrub(str(error))[:2000]
        health.save(update_fields=["last_failure_at", "failing_since", "consecutive_failures", "last_error"])


def _record_health(error: VionlabsError | None) -> None:
    if error is not None and error.status_code is None and isinstance(error, VionlabsRejected):
        return  # refused by the client before sending (a path segment it cannot encode): nothing was learnt
    # A rejection or a 404 is Vionlabs answering: the upstream is healthy even though the action failed.
    if error is None or isinstance(error, VionlabsRejected | VionlabsNotFound):
        record_upstream_success()
    else:
        record_upstream_failure(error)


def _scrub(text: str) -> str:
    """Text bound for the database, with the API key (in any encoding) cut out should Vionlabs echo it."""
    return redact(text, settings.VIONLABS_API_KEY)


# --- Recording answers ----------------------------------------------------------------------------------


def stored_links(links: tuple[Link, ...] | list[Link]) -> list[dict[str, str]]:
    """`_links` as stored: [{"name", "method", "href"}], the href without credentials, query or fragment."""
    result = []
    for link in links:
        parts = urlsplit(link.href)
        netloc = parts.netloc.rpartition("@")[2]
        href = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        result.append({"name": link.name, "method": link.method, "href": _scrub(href)})
    return result


@dataclass(frozen=True)
class _Answer:
    status: str
    error: str
    links: list[dict[str, str]] | None  # None: the answer carries no links (item-level listing)


def _answer_from_state(state: TaskState) -> _Answer:
    return _Answer(status=state.status, error=_scrub(state.error or ""), links=stored_links(state.links))


def _answer_from_item_task(item_task: ItemTask) -> _Answer:
    return _Answer(status=item_task.status, error=_scrub(item_task.error or ""), links=None)


def _apply(task: ProductTask, answer: _Answer, observed_at: dt.datetime) -> bool:
    """Apply an answer observed at `observed_at` to a locked row (not saved). False if it is older than the
    answer already recorded, in which case nothing changes."""
    if task.last_checked_at is not None and observed_at < task.last_checked_at:
        return False
    if answer.status != task.status:
        # An item-level listing carries no _links: the stored ones are kept until a task-level read (which
        # item_refresh makes once per change) replaces them.
        task.status = answer.status
        task.status_changed_at = timezone.now()
    task.error = answer.error
    if answer.links is not None:
        task.links = answer.links
    task.last_checked_at = observed_at
    task.sync_error = ""
    task.sync_error_at = None
    return True


def _clear_marker(task: ProductTask, started_at: dt.datetime) -> None:
    # Only our own marker: one that expired and was taken over by another caller is theirs to clear.
    if task.action_in_progress and task.action_started_at == started_at:
        task.action_in_progress = ""
        task.action_started_at = None


def _event(
    task: ProductTask, *, action: str, status_before: str, who: _Who, error: str = "", note: str = ""
) -> None:
    TaskEvent.objects.create(
        task=task,
        actor=who.actor,
        source=who.source,
        operation=who.operation,
        action=action,
        status_before=status_before,
        status_after=task.status,
        error=error,
        note=note,
    )


def _stale_note(answer: _Answer) -> str:
    return (
        f"Vionlabs answered '{answer.status}', but a newer answer had already been recorded; "
        "the newer one was kept."
    )


# --- Mutations (create, retry, deactivate) --------------------------------------------------------------


@dataclass(frozen=True)
class _Who:
    """Who acted, from where, as part of what, and why: copied onto every event of one service call."""

    actor: User | None
    source: str
    operation: Operation | None
    note: str = ""


def _validate_create(*, product: str, version: str, priority: str) -> None:
    if product not in ProductChoices.values:
        raise ActionRefused(f"Unknown product {product!r}.")
    try:
        validate_version(version)
    except ValidationError as invalid:
        raise ActionRefused(invalid.messages[0]) from invalid
    if priority not in PriorityChoices.values:
        raise ActionRefused(f"Unknown priority {priority!r}: use low, medium or high.")


def check_applies(*, item: CatalogItem, product: str, setting: ProductSetting | None = None) -> None:
    """Refuse a product that does not apply to the item's kind (ProductSetting.applies_to): the one rule
    every create shares, from the item page, the admin and bulk operations alike. `setting`: the product's
    setting as the caller just read it (a bulk run reads it once per tick, not once per item); read here
    when not given."""
    if setting is None or setting.product != product:
        setting = ProductSetting.objects.filter(product=product).first()
    if setting is not None and not setting.applies(item.kind):
        article = "an" if item.kind == ItemKind.EPISODE else "a"
        raise NotApplicable(
            f"{setting.not_applicable_reason(item.kind)}; {item.inventory_id} is {article} "
            f"{item.get_kind_display().lower()}, so no task was sent."
        )


def _marker_blocks(task: ProductTask, now: dt.datetime) -> bool:
    return bool(
        task.action_in_progress
        and task.action_started_at is not None
        and now - task.action_started_at < ABANDONED_AFTER
    )


def _mutation_overlaps(task: ProductTask, observed_at: dt.datetime) -> bool:
    """A live create/deactivate marked before a read was sent: the read may have been served before it."""
    return bool(
        task.action_in_progress
        and task.action_started_at is not None
        and task.action_started_at <= observed_at
        and observed_at - task.action_started_at < ABANDONED_AFTER
    )


def _in_progress_message(task: ProductTask) -> str:
    return (
        f"A {task.action_in_progress} of {task.product} {task.version} for {task.item.inventory_id} "
        "is already under way; wait for it to finish."
    )


def _mark(task: ProductTask, action: str, now: dt.datetime) -> None:
    task.action_in_progress = action
    task.action_started_at = now
    task.save(update_fields=["action_in_progress", "action_started_at", "updated_at"])


def _record_answer(
    task: ProductTask,
    *,
    answer: _Answer,
    observed_at: dt.datetime,
    action: str,
    started_at: dt.datetime,
    who: _Who,
    priority: str | None = None,
    note: str = "",
    sync_error: str = "",
) -> ProductTask:
    """Record a mutation's answer (or the read that settled it) with its event, and release the marker."""
    try:
        return _write_answer(
            task,
            answer=answer,
            observed_at=observed_at,
            action=action,
            started_at=started_at,
            who=who,
            priority=priority,
            note=note,
            sync_error=sync_error,
        )
    except BaseException:
        # The answer could not be written (a database error, a bug): the marker must not outlive the call.
        _release(task, started_at=started_at)
        raise


def _write_answer(
    task: ProductTask,
    *,
    answer: _Answer,
    observed_at: dt.datetime,
    action: str,
    started_at: dt.datetime,
    who: _Who,
    priority: str | None,
    note: str,
    sync_error: str,
) -> ProductTask:
    with transaction.atomic():
        task = _relock(task)
        status_before = task.status
        applied = _apply(task, answer, observed_at)
        if priority is not None:
            task.priority = priority
            task.requested_by = who.actor
            task.requested_at = observed_at
        if sync_error:
            task.sync_error = sync_error
            task.sync_error_at = timezone.now()
        _clear_marker(task, started_at)
        task.save()
        _event(
            task,
            action=action,
            status_before=status_before,
            who=who,
            error=sync_error or answer.error,
            note=_join(who.note, note, "" if applied else _stale_note(answer)),
        )
    return task


def task_create(
    *,
    item: CatalogItem,
    product: str,
    version: str,
    priority: str = "low",
    actor: Actor = None,
    source: str = EventSource.USER,
    operation: Operation | None = None,
    note: str = "",
    setting: ProductSetting | None = None,
    known_new: bool = False,
) -> ProductTask:
    """Create the task at Vionlabs (one POST) and record it; raises ActionRefused, or the client's error.

    For callers that create many (bulk runs): `setting` is the product's setting as just read (see
    check_applies); `known_new` says the caller found no row for this task a moment ago, so the row is
    inserted, already marked, in one statement, the locking read coming only if one was added since."""
    ensure_no_transaction()  # before the first write too: inside a caller's transaction nothing would commit
    _validate_create(product=product, version=version, priority=priority)
    check_applies(item=item, product=product, setting=setting)
    who = _Who(acting_user(actor), source, operation, note)
    now = timezone.now()
    if known_new:
        inserted = _insert_marked(item=item, product=product, version=version, priority=priority, now=now)
        if inserted is not None:
            return _settle_or_send_create(
                inserted, abandoned="", action=EventAction.CREATE, priority=priority, started_at=now, who=who
            )
    with transaction.atomic():
        # A new row is inserted already marked (one write instead of two: bulk runs create thousands).
        task, created = ProductTask.objects.select_for_update().get_or_create(
            item=item,
            product=product,
            version=version,
            defaults={
                "priority": priority,
                "action_in_progress": EventAction.CREATE,
                "action_started_at": now,
            },
        )
        task.item = item
        abandoned = ""
        if not created:
            if _marker_blocks(task, now):
                raise ActionInProgress(_in_progress_message(task))
            if task.status in TaskStatus.ACTIVE:
                raise TaskAlreadyActive(
                    f"{product} {version} for {item.inventory_id} is already {task.status} at Vionlabs; "
                    "it was not created again."
                )
            abandoned = task.action_in_progress
            _mark(task, EventAction.CREATE, now)
    return _settle_or_send_create(
        task, abandoned=abandoned, action=EventAction.CREATE, priority=priority, started_at=now, who=who
    )


def _insert_marked(
    *, item: CatalogItem, product: str, version: str, priority: str, now: dt.datetime
) -> ProductTask | None:
    """Insert a new task row already marked as being created (its own transaction, one statement); None if
    the key has a row (another caller inserted it): the caller then locks and reads that one."""
    try:
        with transaction.atomic():
            task = ProductTask.objects.create(
                item=item,
                product=product,
                version=version,
                priority=priority,
                action_in_progress=EventAction.CREATE,
                action_started_at=now,
            )
    except IntegrityError:
        return None
    task.item = item
    return task


def task_retry(
    *,
    task: ProductTask,
    actor: Actor = None,
    source: str = EventSource.USER,
    operation: Operation | None = None,
    note: str = "",
    setting: ProductSetting | None = None,
) -> ProductTask:
    """Create a failed or deactivated task again (a new POST on the same key); raises ActionRefused or the
    client's error. `setting`: as for task_create."""
    ensure_no_transaction()
    who = _Who(acting_user(actor), source, operation, note)
    now = timezone.now()
    with transaction.atomic():
        task = ProductTask.objects.select_for_update(of=("self",)).select_related("item").get(pk=task.pk)
        if _marker_blocks(task, now):
            raise ActionInProgress(_in_progress_message(task))
        if task.status not in TaskStatus.RETRYABLE:
            raise ActionRefused(
                f"Only a failed or deactivated task can be retried; {task.product} {task.version} for "
                f"{task.item.inventory_id} is {task.status or 'not yet known to Vionlabs'}."
            )
        check_applies(item=task.item, product=task.product, setting=setting)
        abandoned = task.action_in_progress
        _mark(task, EventAction.RETRY, now)
    return _settle_or_send_create(
        task, abandoned=abandoned, action=EventAction.RETRY, priority=task.priority, started_at=now, who=who
    )


def _settle_or_send_create(
    task: ProductTask, *, abandoned: str, action: str, priority: str, started_at: dt.datetime, who: _Who
) -> ProductTask:
    """POST a marked create or retry, unless it took over an abandoned marker whose outcome a read settles."""
    if abandoned:
        settled = _settle_abandoned(task, abandoned=abandoned, action=action, started_at=started_at, who=who)
        if settled is not None:
            return settled
    return _send_create(task, action=action, priority=priority, started_at=started_at, who=who)


def _settle_abandoned(
    task: ProductTask, *, abandoned: str, action: str, started_at: dt.datetime, who: _Who
) -> ProductTask | None:
    """The row held the marker of a create or deactivate whose process died mid-call (older than
    ABANDONED_AFTER), so that call may have reached Vionlabs. Read the task before sending anything: an
    ambiguous change is settled by a read, never by a second POST or DELETE.

    Returns the recorded row when the read shows the wanted outcome already (the task exists, or is
    deactivated): nothing is sent. Returns None when the caller may send: Vionlabs has no such task (404),
    or the read shows a state the action changes (a failed task to create again, a running one to
    deactivate). Raises the read's error, with the row marked outcome unknown, when the read fails."""
    label = f"{task.product} {task.version} for {task.item.inventory_id}"
    observed_at = timezone.now()
    try:
        state = _read_task(task)
    except VionlabsNotFound:
        record_upstream_success()
        return None
    except VionlabsError as read_error:
        message = (
            f"{OUTCOME_UNKNOWN}: an earlier {abandoned} of {label} was interrupted and may or may not have "
            f"reached Vionlabs, and the read that should settle it failed ({read_error}). Nothing was sent; "
            "a refresh will settle it."
        )
        _record_failure(
            task, action=action, started_at=started_at, error=read_error, who=who, sync_error=message
        )
        raise
    except BaseException:
        _release(task, started_at=started_at)
        raise
    record_upstream_success()
    answer = _answer_from_state(state)
    wanted = (
        answer.status == TaskStatus.DEACTIVATED
        if action == EventAction.DEACTIVATE
        else (answer.status in TaskStatus.ACTIVE)
    )
    if not wanted:
        return None
    return _record_answer(
        task,
        answer=answer,
        observed_at=observed_at,
        action=action,
        started_at=started_at,
        who=who,
        note=(
            f"An earlier {abandoned} was interrupted; a read found the task {answer.status} at Vionlabs, "
            "so nothing was sent again."
        ),
    )


def _send_create(
    task: ProductTask, *, action: str, priority: str, started_at: dt.datetime, who: _Who
) -> ProductTask:
    return _send_mutation(
        task,
        action=action,
        started_at=started_at,
        who=who,
        priority=priority,
        send=lambda: get_client().create_task(
            task.item.inventory_id, task.product, task.version, priority=priority
        ),
        reconcile=lambda error: _reconcile_create(
            task, action=action, priority=priority, started_at=started_at, who=who, error=error
        ),
    )


def _send_mutation(
    task: ProductTask,
    *,
    action: str,
    started_at: dt.datetime,
    who: _Who,
    send: Callable[[], TaskState],
    reconcile: Callable[[VionlabsUnavailable], ProductTask],
    priority: str | None = None,
    not_found_note: str = "",
) -> ProductTask:
    """Send a marked create or deactivate (outside any transaction) and record what came of it: the answer,
    a reconciling read when the outcome is unknown, or the failure (then raised)."""
    try:
        ensure_no_transaction()
        with keep_for_settling(SEND_SHARE):
            state = send()
    except VionlabsUnavailable as error:
        if error.outcome_unknown:
            return reconcile(error)
        _record_failure(task, action=action, started_at=started_at, error=error, who=who)
        raise
    except VionlabsError as error:
        note = not_found_note if isinstance(error, VionlabsNotFound) else ""
        _record_failure(task, action=action, started_at=started_at, error=error, who=who, sync_error=note)
        raise
    except BaseException:
        _release(task, started_at=started_at)
        raise
    # The answer is recorded as seen when it arrived, not when the request left: a read sent while the change
    # was in flight may have been served before it took effect, and must not overwrite it once the marker is
    # cleared (_apply drops answers older than the last one recorded).
    observed_at = timezone.now()
    task = _record_answer(
        task,
        answer=_answer_from_state(state),
        observed_at=observed_at,
        action=action,
        started_at=started_at,
        who=who,
        priority=priority,
    )
    _record_health(None)
    return task


def _reconcile_create(
    task: ProductTask,
    *,
    action: str,
    priority: str,
    started_at: dt.datetime,
    who: _Who,
    error: VionlabsUnavailable,
) -> ProductTask:
    """The POST may have reached Vionlabs: ask (one GET on the natural key) instead of sending it again."""
    record_upstream_failure(error)
    label = f"{task.product} {task.version} for {task.item.inventory_id}"
    observed_at = timezone.now()
    try:
        state = _read_task(task)
    except VionlabsNotFound as not_found:
        message = (
            f"The task was not created: Vionlabs did not create {label}. The create request failed ({error}) "
            "and a follow-up read found no such task. Try again."
        )
        _record_failure(
            task, action=action, started_at=started_at, error=not_found, who=who, sync_error=message
        )
        raise TaskNotCreated(message, status_code=404) from error
    except VionlabsError as read_error:
        message = (
            f"{OUTCOME_UNKNOWN}: the create request for {label} may or may not have reached Vionlabs ({error}), "
            f"and the follow-up read failed too ({read_error}). A refresh will settle it."
        )
        _record_failure(
            task, action=action, started_at=started_at, error=read_error, who=who, sync_error=message
        )
        raise error from read_error
    except BaseException:
        _release(task, started_at=started_at)
        raise
    answer = _answer_from_state(state)
    record_upstream_success()
    if answer.status in TaskStatus.RETRYABLE:
        # Found, but failed or deactivated: most likely the old task, the POST having never landed (or it failed
        # at once). Either way nothing is running, and the operator should try again.
        message = (
            f"The task was not created: the create request for {label} failed ({error}) and a follow-up read "
            f"shows the task {answer.status}. Try again."
        )
        _record_answer(
            task,
            answer=answer,
            observed_at=observed_at,
            action=action,
            started_at=started_at,
            who=who,
            sync_error=message,
        )
        raise TaskNotCreated(message) from error
    return _record_answer(
        task,
        answer=answer,
        observed_at=observed_at,
        action=action,
        started_at=started_at,
        who=who,
        priority=priority,
        note=(
            f"The create request's answer was lost ({error}); a follow-up read found the task at Vionlabs "
            f"({answer.status}), so the create succeeded."
        ),
    )


def task_deactivate(
    *,
    task: ProductTask,
    actor: Actor = None,
    source: str = EventSource.USER,
    operation: Operation | None = None,
    note: str = "",
) -> ProductTask:
    """Deactivate the task at Vionlabs (DELETE) and record the answer; raises ActionRefused or the client's
    error (VionlabsNotFound when Vionlabs has no such task)."""
    ensure_no_transaction()
    who = _Who(acting_user(actor), source, operation, note)
    now = timezone.now()
    with transaction.atomic():
        task = ProductTask.objects.select_for_update(of=("self",)).select_related("item").get(pk=task.pk)
        if _marker_blocks(task, now):
            raise ActionInProgress(_in_progress_message(task))
        if task.status == TaskStatus.DEACTIVATED:
            raise ActionRefused(
                f"{task.product} {task.version} for {task.item.inventory_id} is already deactivated."
            )
        abandoned = task.action_in_progress
        _mark(task, EventAction.DEACTIVATE, now)
    if abandoned:
        settled = _settle_abandoned(
            task, abandoned=abandoned, action=EventAction.DEACTIVATE, started_at=now, who=who
        )
        if settled is not None:
            return settled
    return _send_mutation(
        task,
        action=EventAction.DEACTIVATE,
        started_at=now,
        who=who,
        send=lambda: get_client().deactivate_task(task.item.inventory_id, task.product, task.version),
        reconcile=lambda error: _reconcile_deactivate(task, started_at=now, who=who, error=error),
        not_found_note=(
            f"Vionlabs has no task {task.product} {task.version} for {task.item.inventory_id}, so nothing was "
            "deactivated; the status shown here is the last one Vionlabs gave."
        ),
    )


def _reconcile_deactivate(
    task: ProductTask, *, started_at: dt.datetime, who: _Who, error: VionlabsUnavailable
) -> ProductTask:
    """The DELETE may have reached Vionlabs: read the task so the row says what really happened."""
    record_upstream_failure(error)
    action = EventAction.DEACTIVATE
    observed_at = timezone.now()
    try:
        state = _read_task(task)
    except VionlabsError as read_error:
        message = (
            f"{OUTCOME_UNKNOWN}: the deactivation may or may not have reached Vionlabs ({error}), and the "
            f"follow-up read failed too ({read_error}). A refresh will settle it."
        )
        _record_failure(
            task, action=action, started_at=started_at, error=read_error, who=who, sync_error=message
        )
        raise error from read_error
    except BaseException:
        _release(task, started_at=started_at)
        raise
    answer = _answer_from_state(state)
    record_upstream_success()
    if answer.status == TaskStatus.DEACTIVATED:
        return _record_answer(
            task,
            answer=answer,
            observed_at=observed_at,
            action=action,
            started_at=started_at,
            who=who,
            note=f"The deactivation's answer was lost ({error}); a follow-up read shows it took effect.",
        )
    message = f"The deactivation failed ({error}); a follow-up read shows the task still {answer.status}. Try again."
    _record_answer(
        task,
        answer=answer,
        observed_at=observed_at,
        action=action,
        started_at=started_at,
        who=who,
        sync_error=message,
    )
    raise error


def _read_task(task: ProductTask) -> TaskState:
    client = get_client()
    ensure_no_transaction()
    return client.get_task(task.item.inventory_id, task.product, task.version)


# --- Reads (refresh) ------------------------------------------------------------------------------------


def task_refresh(
    *,
    task: ProductTask,
    actor: Actor = None,
    source: str = EventSource.USER,
    operation: Operation | None = None,
) -> ProductTask:
    """Read one task's status from Vionlabs (GET) and record it with an event; raises the client's error."""
    ensure_no_transaction()
    who = _Who(acting_user(actor), source, operation)
    # The time first, then the row: a mutation not yet marked when the row is read starts after this time,
    # so its answer counts as newer than ours. One already marked may be served before or after our GET.
    observed_at = timezone.now()
    task = ProductTask.objects.select_related("item").get(pk=task.pk)
    busy_at_start = _marker_blocks(task, observed_at)
    try:
        state = _read_task(task)
    except VionlabsError as error:
        _record_failure(task, action=EventAction.SYNC_FAILED, started_at=None, error=error, who=who)
        raise
    with transaction.atomic():
        task = _relock(task)
        status_before = task.status
        answer = _answer_from_state(state)
        busy = busy_at_start or _mutation_overlaps(task, observed_at)
        applied = not busy and _apply(task, answer, observed_at)
        task.save()
        # An explicit refresh is always recorded, changed or not: someone (or something) asked for it.
        if busy:
            detail = (
                f"Vionlabs answered '{answer.status}' while a {task.action_in_progress or 'change'} was under way; "
                "not applied, the change's own answer decides."
            )
        elif not applied:
            detail = _stale_note(answer)
        elif status_before == task.status:
            detail = "No change."
        else:
            detail = ""
        _event(
            task,
            action=EventAction.REFRESH,
            status_before=status_before,
            who=who,
            error=answer.error,
            note=detail,
        )
    _record_health(None)
    return task


#: Asked how many of `n` task-level reads may be sent now; answers how many (the scheduler's budget).
LinkReadAllowance = Callable[[int], int]


def item_refresh(
    *,
    item: CatalogItem,
    actor: Actor = None,
    source: str = EventSource.SYNC,
    operation: Operation | None = None,
    link_reads: LinkReadAllowance | None = None,
) -> list[ProductTask]:
    """Read all of an item's tasks in one call and update every row; tasks found only at Vionlabs get a row
    (event `discover`). Events are written for changes only. A task whose status the listing shows changed
    is then read once on its own (GET task), for its new `_links` (the listing carries none): as many as
    `link_reads` allows, all without it. Raises the client's error (of the listing)."""
    ensure_no_transaction()
    who = _Who(acting_user(actor), source, operation)
    client = get_client()
    observed_at = timezone.now()  # before reading the markers: see task_refresh
    busy_at_start = set(
        ProductTask.objects.filter(item=item)
        .action_under_way(now=observed_at, abandoned_after=ABANDONED_AFTER)
        .values_list("pk", flat=True)
    )
    try:
        ensure_no_transaction()
        item_tasks = client.list_item_tasks(item.inventory_id)
    except VionlabsError as error:
        _record_item_failure(item=item, error=error, who=who)
        raise
    product_limit = ProductTask._meta.get_field("product").max_length or 0
    version_limit = VERSION_MAX_LENGTH
    changed: list[ProductTask] = []
    with transaction.atomic():
        # Lock in a fixed order so that two refreshes of one item cannot deadlock.
        rows = {
            (row.product, row.version): row
            for row in ProductTask.objects.select_for_update().filter(item=item).order_by("pk")
        }
        for item_task in item_tasks:
            key = (item_task.product, item_task.version)
            if not all(key) or len(key[0]) > product_limit or len(key[1]) > version_limit:
                logger.warning(
                    "Ignoring a task of item %s with an empty or over-long product or version", item.pk
                )
                continue
            answer = _answer_from_item_task(item_task)
            row = rows.get(key)
            if row is None:
                row, discovered = _discover(item, key, answer, observed_at, who)
                rows[key] = row
                if discovered:
                    continue
            if row.pk in busy_at_start or _mutation_overlaps(row, observed_at):
                continue  # a create or deactivate is under way: its own answer decides
            status_before = row.status
            if _apply(row, answer, observed_at):
                row.save()
                if row.status != status_before:
                    changed.append(row)
                    _event(
                        row,
                        action=EventAction.REFRESH,
                        status_before=status_before,
                        who=who,
                        error=answer.error,
                    )
        listed = {(item_task.product, item_task.version) for item_task in item_tasks}
        for key, row in rows.items():
            if key not in listed and _unknown_before(row, observed_at) and row.pk not in busy_at_start:
                _settle_unlisted(row, who)
    _record_health(None)
    allowed = len(changed) if link_reads is None else max(0, min(len(changed), link_reads(len(changed))))
    if allowed < len(changed):
        logger.debug(
            "Links of %d changed task(s) of item %s left for later: budget", len(changed) - allowed, item.pk
        )
    for row in changed[:allowed]:
        row.item = item
        rows[(row.product, row.version)] = _read_links(row, who)
    tasks = sorted(rows.values(), key=lambda row: (row.product, row.version))
    for row in tasks:
        row.item = item
    return tasks


def _read_links(task: ProductTask, who: _Who) -> ProductTask:
    """After a listing showed the task's status change: one GET of the task for its `_links` (and a status
    newer still, if it moved again). A failure is logged and leaves the row as the listing left it."""
    observed_at = timezone.now()
    try:
        state = _read_task(task)
    except VionlabsError as error:
        logger.warning("Reading the links of task %s failed: %s", task.pk, error)
        return task
    with transaction.atomic():
        task = _relock(task)
        if _mutation_overlaps(task, observed_at):
            return task  # a create or deactivate is under way: its own answer decides
        status_before = task.status
        answer = _answer_from_state(state)
        if _apply(task, answer, observed_at):
            task.save()
            if task.status != status_before:
                _event(
                    task, action=EventAction.REFRESH, status_before=status_before, who=who, error=answer.error
                )
    return task


def _unknown_before(row: ProductTask, observed_at: dt.datetime) -> bool:
    """The row's last change had an unknown outcome, recorded before a read sent at `observed_at`."""
    return bool(
        row.sync_error.startswith(OUTCOME_UNKNOWN)
        and row.sync_error_at is not None
        and row.sync_error_at < observed_at
        and not _mutation_overlaps(row, observed_at)
    )


def _settle_unlisted(row: ProductTask, who: _Who) -> None:
    """A change with an unknown outcome, and a later listing of the item without the task: it is not there,
    as a 404 on the settling read would have said. Say so instead of asking again for ever."""
    message = (
        f"Settled by a later read: Vionlabs has no task {row.product} {row.version} for "
        f"{row.item.inventory_id}, so the change whose outcome was unknown did not create it. Try again."
    )
    row.sync_error = message
    row.sync_error_at = timezone.now()
    row.save(update_fields=["sync_error", "sync_error_at", "updated_at"])
    _event(row, action=EventAction.REFRESH, status_before=row.status, who=who, error=message)


def _discover(
    item: CatalogItem, key: tuple[str, str], answer: _Answer, observed_at: dt.datetime, who: _Who
) -> tuple[ProductTask, bool]:
    """Add the row for a task found only at Vionlabs; (row, True). If another caller (a create, a second
    refresh) inserted it meanwhile, return theirs, locked, as (row, False) to be treated as an existing row."""
    product, version = key
    try:
        # A savepoint: on PostgreSQL the insert waits for a concurrent one and then fails on the unique key.
        with transaction.atomic():
            row = ProductTask(item=item, product=product, version=version)
            _apply(row, answer, observed_at)
            row.save()
    except IntegrityError:
        return ProductTask.objects.select_for_update().get(item=item, product=product, version=version), False
    _event(
        row,
        action=EventAction.DISCOVER,
        status_before="",
        who=who,
        error=answer.error,
        note="Found at Vionlabs; the dashboard had no row for it.",
    )
    return row, True


# --- Failures -------------------------------------------------------------------------------------------


def _record_failure(
    task: ProductTask,
    *,
    action: str,
    started_at: dt.datetime | None,
    error: VionlabsError,
    who: _Who,
    sync_error: str = "",
) -> None:
    """Keep the last known status; note the failure on the row with its event and in UpstreamHealth.
    The caller then raises."""
    message = _scrub(sync_error or str(error))
    try:
        with transaction.atomic():
            task = _relock(task)
            task.sync_error = message
            task.sync_error_at = timezone.now()
            if started_at is not None:
                _clear_marker(task, started_at)
            task.save()
            # A 429 retried by a bulk run writes no history row (the first one did): a 429 storm would
            # otherwise write one per attempt. The row's sync_error says it either way.
            if not (isinstance(error, VionlabsRateLimited) and _retrying_rate_limit.get()):
                _event(task, action=action, status_before=task.status, who=who, error=message, note=who.note)
    except BaseException:
        if started_at is not None:
            _release(task, started_at=started_at)
        raise
    _record_health(error)


def _record_item_failure(*, item: CatalogItem, error: VionlabsError, who: _Who) -> None:
    message = _scrub(str(error))
    now = timezone.now()
    with transaction.atomic():
        for row in ProductTask.objects.select_for_update().filter(item=item).order_by("pk"):
            # One event per distinct failure: a scheduler retrying through an outage must not flood history.
            if row.sync_error == message:
                continue
            row.sync_error = message
            row.sync_error_at = now
            row.save(update_fields=["sync_error", "sync_error_at", "updated_at"])
            _event(row, action=EventAction.SYNC_FAILED, status_before=row.status, who=who, error=message)
    _record_health(error)


def _release(task: ProductTask, *, started_at: dt.datetime) -> None:
    # An unexpected exception (a bug, a KeyboardInterrupt): do not leave the row blocked for minutes.
    try:
        with transaction.atomic():
            locked = _relock(task)
            _clear_marker(locked, started_at)
            locked.save(update_fields=["action_in_progress", "action_started_at", "updated_at"])
    except Exception:
        logger.exception("Could not clear the in-progress marker of task %s", task.pk)


def _relock(task: ProductTask) -> ProductTask:
    locked = ProductTask.objects.select_for_update().get(pk=task.pk)
    locked.item = task.item
    return locked


def _join(*parts: str) -> str:
    return " ".join(part for part in parts if part)


# --- Results --------------------------------------------------------------------------------------------

#: A result is fetched while a person waits: each attempt gives up after this many seconds, and the
#: request-path client retries once at most without sleeping through a long Retry-After
#: (client.interactive_calls), so the fragment answers within about 2 x 4 s + 2 s whatever Vionlabs does.
RESULT_FETCH_TIMEOUT = 4.0
#: A cached result older than this is fetched again when it is next opened (Vionlabs may reprocess).
RESULT_MAX_AGE = dt.timedelta(hours=24)
#: Parameter sets kept per task; the oldest fetch goes first.
RESULT_CACHE_PER_TASK = 10


def _cached_is_current(cached: TaskResult, task: ProductTask, now: dt.datetime) -> bool:
    """Fetched after the task last changed status (a retried task's new result replaces the old one) and
    not older than RESULT_MAX_AGE."""
    if task.status_changed_at is not None and cached.fetched_at < task.status_changed_at:
        return False
    return now - cached.fetched_at < RESULT_MAX_AGE


def _fetch_result(task: ProductTask, params: ResultParams) -> AnyResult:
    ensure_no_transaction()
    with interactive_calls():
        client = get_client(max_timeout=RESULT_FETCH_TIMEOUT)
        inventory_id, version = task.item.inventory_id, task.version
        if task.product == ProductChoices.ADBREAKS:
            return client.get_adbreaks(inventory_id, version=version, **params.as_dict())
        if task.product == ProductChoices.CONTEXTUAL_ADBREAK:
            return client.get_contextual_adbreaks(inventory_id, version=version, **params.as_dict())
        if task.product == ProductChoices.MARKERS:
            return client.get_markers(inventory_id, version=version)
        return client.get_result(inventory_id, task.product, version=version)


def _store_result(task: ProductTask, params: ResultParams, data: JsonValue, now: dt.datetime) -> TaskResult:
    with transaction.atomic():
        row, _ = TaskResult.objects.update_or_create(
            task=task,
            params_key=params.key,
            defaults={"params": params.as_dict(), "fetched_at": now, "data": data},
        )
        keep = TaskResult.objects.filter(task=task).order_by("-fetched_at", "-pk")[:RESULT_CACHE_PER_TASK]
        TaskResult.objects.filter(task=task).exclude(pk__in=list(keep.values_list("pk", flat=True))).delete()
    return row


def _view_of(task: ProductTask, params: ResultParams, row: TaskResult, **state: Any) -> TaskResultView:
    result = parse_result(task.product, row.data, inventory_id=task.item.inventory_id)
    return TaskResultView(task=task, params=params, result=result, fetched_at=row.fetched_at, **state)


def task_results(
    *, task: ProductTask, params: ResultParams | None = None, refresh: bool = False
) -> TaskResultView:
    """A done task's result: the cached one while current, else fetched from Vionlabs (outside any
    transaction, with a short deadline) and cached with the key redacted. `refresh` skips the cache.

    Never raises a VionlabsError: a failed fetch is the view's `message`, with the cached result (if any)
    marked `stale`. Raises HttpInsideTransaction when called inside a transaction."""
    if task.product not in PARAM_PRODUCTS or params is None:
        params = ResultParams()
    if task.status != TaskStatus.DONE:
        return TaskResultView(
            task=task,
            params=params,
            message="This task is not done: Vionlabs has no result for it yet.",
        )
    now = timezone.now()
    cached = TaskResult.objects.filter(task=task, params_key=params.key).first()
    if cached is not None and not refresh and _cached_is_current(cached, task, now):
        return _view_of(task, params, cached)
    try:
        result = _fetch_result(task, params)
    except VionlabsError as error:
        message, wait = describe_result_error(error, product_label=task.get_product_display())
        logger.info("Result of task %s not fetched: %s", task.pk, _scrub(str(error)))
        message = _scrub(message)
        if cached is not None:
            return _view_of(task, params, cached, stale=True, message=message, retry_after=wait)
        return TaskResultView(task=task, params=params, stale=True, message=message, retry_after=wait)
    data = redact_json(raw_of(result), _scrub)
    row = _store_result(task, params, data, timezone.now())
    return _view_of(task, params, row, fetched_now=True)
