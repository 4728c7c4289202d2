"""The dashboard's memory: the catalog, what Vionlabs last said about each task, and who did what.

Models hold fields, constraints and small derived properties. Reads that select rows are QuerySet methods
(querysets.py), reads that build a page are in selectors.py; anything that calls Vionlabs or changes state
lives in services.py.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from dashboard.vionlabs import FINAL_STATUSES, IN_FLIGHT_STATUSES, Priority, Product, Status

if TYPE_CHECKING:  # for an annotation only: stuck.py imports this module
    from .stuck import Threshold

from .querysets import (
    IN_FLIGHT_SINCE_FIELDS,
    CatalogItemQuerySet,
    ProductSettingQuerySet,
    ProductTaskQuerySet,
)
from .validators import INVENTORY_ID_MAX_LENGTH, VERSION_MAX_LENGTH, validate_inventory_id


class ProductChoices(models.TextChoices):
    ADBREAKS = Product.ADBREAKS.value, "Ad breaks"
    CONTEXTUAL_ADBREAK = Product.CONTEXTUAL_ADBREAK.value, "Contextual ad break"
    EMOTIONS = Product.EMOTIONS.value, "Emotions"
    FINGERPRINT = Product.FINGERPRINT.value, "Fingerprint"
    FINGERPRINTPLUS = Product.FINGERPRINTPLUS.value, "Fingerprint+"
    JITPREVIEWS = Product.JITPREVIEWS.value, "JIT previews"
    JITTHUMBNAILS = Product.JITTHUMBNAILS.value, "JIT thumbnails"
    MARKERS = Product.MARKERS.value, "Markers"
    NUDITY = Product.NUDITY.value, "Nudity"
    PROFANITY = Product.PROFANITY.value, "Profanity"
    SEMANTIC = Product.SEMANTIC.value, "Semantic"
    SIMILAR = Product.SIMILAR.value, "Similar"
    CONTENT_SUMMARY = Product.CONTENT_SUMMARY.value, "Content summary"
    SEMANTIC_SCENES = Product.SEMANTIC_SCENES.value, "Semantic scenes"
    VERTICAL_CONVERSION = Product.VERTICAL_CONVERSION.value, "Vertical conversion"
    SCENE_TAGS = Product.SCENE_TAGS.value, "Scene tags"


class PriorityChoices(models.TextChoices):
    LOW = Priority.LOW.value, "Low"
    MEDIUM = Priority.MEDIUM.value, "Medium"
    HIGH = Priority.HIGH.value, "High"


class TaskStatus(models.TextChoices):
    """The known statuses (values from the client, the one place they are defined). `ProductTask.status` is a
    free string: a value not listed here is stored and shown as it comes."""

    PENDING = Status.PENDING.value, "Pending"
    PROCESSING = Status.PROCESSING.value, "Processing"
    DONE = Status.DONE.value, "Done"
    FAILED = Status.FAILED.value, "Failed"
    DEACTIVATED = Status.DEACTIVATED.value, "Deactivated"

    # Sets of plain strings, filled in below the class (inside it they would become members).
    IN_FLIGHT: ClassVar[frozenset[str]]
    FINAL: ClassVar[frozenset[str]]
    ACTIVE: ClassVar[frozenset[str]]
    RETRYABLE: ClassVar[frozenset[str]]


# Sets of plain strings: `"pending" in TaskStatus.IN_FLIGHT` holds, and so does `TaskStatus.PENDING in ...`.
TaskStatus.IN_FLIGHT = frozenset(IN_FLIGHT_STATUSES)
TaskStatus.FINAL = frozenset(FINAL_STATUSES)
# The dashboard's rules on top: a create would duplicate an ACTIVE task (the skip rule of bulk operations);
# a RETRYABLE one is started again by a new POST.
TaskStatus.ACTIVE = TaskStatus.IN_FLIGHT | {Status.DONE.value}
TaskStatus.RETRYABLE = frozenset({Status.FAILED.value, Status.DEACTIVATED.value})


class ItemKind(models.TextChoices):
    """As in Vionlabs' catalog."""

    STANDALONE = "standalone", "Standalone"
    SERIES = "series", "Series"
    SEASON = "season", "Season"
    EPISODE = "episode", "Episode"

    CONTAINERS: ClassVar[tuple[str, ...]]


#: Kinds that hold other items (a series holds seasons, a season holds episodes).
ItemKind.CONTAINERS = (ItemKind.SERIES.value, ItemKind.SEASON.value)
#: Kinds in words, for "Markers is set to apply to standalone items and episodes only".
KIND_PLURALS = {
    ItemKind.STANDALONE.value: "standalone items",
    ItemKind.SERIES.value: "series",
    ItemKind.SEASON.value: "seasons",
    ItemKind.EPISODE.value: "episodes",
}
#: What a product applies to unless the admin says otherwise: the items that carry video of their own.
DEFAULT_APPLIES_TO = (ItemKind.STANDALONE.value, ItemKind.EPISODE.value)


def default_applies_to() -> list[str]:
    return list(DEFAULT_APPLIES_TO)


def validate_applies_to(value: object) -> None:
    """A non-empty list of item kinds, each named once."""
    if not isinstance(value, list) or not value:
        raise ValidationError("Choose at least one kind of item the product applies to.")
    unknown = [kind for kind in value if kind not in ItemKind.values]
    if unknown:
        raise ValidationError(f"Unknown item kinds: {', '.join(map(str, unknown))}.")
    if len(set(value)) != len(value):
        raise ValidationError("Name each kind of item once.")


class CatalogItem(models.Model):
    inventory_id = models.CharField(
        max_length=INVENTORY_ID_MAX_LENGTH,
        unique=True,
        validators=[validate_inventory_id],
        help_text="The customer's own identifier, stored exactly as given.",
    )
    title = models.CharField(max_length=500, blank=True)
    kind = models.CharField(max_length=16, choices=ItemKind, default=ItemKind.STANDALONE)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    vionlabs_id = models.CharField(max_length=64, blank=True, help_text="Vionlabs' own id, from its catalog.")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CatalogItemQuerySet.as_manager()

    class Meta:
        ordering = ["inventory_id"]
        indexes = [
            models.Index(fields=["kind", "inventory_id"], name="item_kind_idx"),
            models.Index(fields=["title"], name="item_title_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.inventory_id})" if self.title else self.inventory_id

    def get_absolute_url(self) -> str:
        return reverse("catalog:item-detail", args=[self.pk])


class ProductTask(models.Model):
    """What we know of one Vionlabs task, addressed by its natural key (item, product, version)."""

    # Not stored: what selectors attach to the rows a page shows (and `inflight_since`, the annotation of
    # `with_inflight_since()`). Declared so that the type checker knows them.
    stuck: bool
    threshold: Threshold
    in_flight_for: dt.timedelta
    inflight_since: dt.datetime
    timeline: list[Any]
    not_applicable: str

    item = models.ForeignKey(CatalogItem, on_delete=models.CASCADE, related_name="tasks")
    product = models.CharField(max_length=32, choices=ProductChoices)
    version = models.CharField(max_length=VERSION_MAX_LENGTH)
    priority = models.CharField(max_length=8, choices=PriorityChoices, default=PriorityChoices.LOW)
    # Free string, stored whole (the client bounds it at STATUS_MAX_LENGTH); "" until Vionlabs has answered for
    # this row. Known values: TaskStatus.
    status = models.TextField(blank=True, db_index=True)
    error = models.TextField(blank=True)
    # Parsed `_links`: [{"name", "method", "href"}], hrefs stored without any query string.
    links = models.JSONField(default=list, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(null=True, blank=True)
    # Last successful answer from Vionlabs; never moves backwards.
    last_checked_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    # The last failure to reach Vionlabs, kept apart from the status so that the last known status survives.
    sync_error = models.TextField(blank=True)
    sync_error_at = models.DateTimeField(null=True, blank=True)
    # An upstream mutation (create/deactivate) is under way: set and committed before the HTTP call, so that
    # concurrent callers see it and do not send a second one. Cleared when the answer is recorded.
    action_in_progress = models.CharField(max_length=16, blank=True)
    action_started_at = models.DateTimeField(null=True, blank=True)
    # When the scheduler should look at this task again (backoff for long-running tasks).
    next_check_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProductTaskQuerySet.as_manager()

    class Meta:
        ordering = ["item__inventory_id", "product", "version"]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "product", "version"], name="task_unique_item_product_version"
            )
        ]
        indexes = [
            models.Index(fields=["product", "version", "status"], name="task_product_version_idx"),
            models.Index(fields=["last_checked_at"], name="task_last_checked_idx"),
            models.Index(fields=["status", "next_check_at"], name="task_status_next_check_idx"),
            models.Index(fields=["status_changed_at"], name="task_status_changed_idx"),
            # Recent failures (newest first, ties by id), and the latest completions the stuck thresholds
            # are computed from.
            models.Index(fields=["status", "status_changed_at", "id"], name="task_status_time_idx"),
            # The catalog's product/status and failures filters (EXISTS per item; their 10,000-row counts read
            # these in item order, index only) and the task list by status, newest first.
            models.Index(fields=["product", "status", "item"], name="task_product_status_item_idx"),
            models.Index(fields=["status", "item"], name="task_status_item_idx"),
            models.Index(fields=["status", "id"], name="task_status_id_idx"),
            # The scheduler's claim walks task_inflight_check_idx (in-flight tasks by last check, NULLS FIRST):
            # PostgreSQL only, created by migration 0014_postgres_indexes, as SQLite cannot order an index's NULLs.
            # Stuck tasks: per (product, priority), in-flight tasks by how long they have been in flight, so
            # each pair's threshold is one index range (stuck.stuck_tasks, stuck.stuck_filter).
            models.Index(
                "product",
                "priority",
                Coalesce("requested_at", "created_at"),
                "id",
                name="task_inflight_pair_idx",
                condition=Q(status__in=sorted(map(str, IN_FLIGHT_STATUSES))),
            ),
        ]
        permissions = [
            ("operate_tasks", "Can create, refresh, deactivate and retry Vionlabs tasks"),
        ]

    def __str__(self) -> str:
        return f"{self.item.inventory_id} · {self.product} {self.version}"

    @property
    def is_in_flight(self) -> bool:
        return self.status in TaskStatus.IN_FLIGHT

    @property
    def in_flight_since(self) -> dt.datetime | None:
        """When the task went in flight (see IN_FLIGHT_SINCE_FIELDS)."""
        return next((when for name in IN_FLIGHT_SINCE_FIELDS if (when := getattr(self, name))), None)

    @property
    def is_final(self) -> bool:
        return self.status in TaskStatus.FINAL

    @property
    def is_known_status(self) -> bool:
        return self.status in TaskStatus.values


class TaskCount(models.Model):
    """How many tasks there are per (product, version, status, kind of item), kept by database triggers.

    An append-only log of deltas: the triggers on ProductTask and CatalogItem (migration 0012_task_counts) add a row for
    every insert, delete and change of status, product, version or item kind, in the same transaction as
    the change, so the sum per key is always the exact count. Rows are only ever inserted, never updated, so
    concurrent writers never wait on a shared counter row (no hot row, no deadlock). `counts.compact`
    folds the log back into one row per key; `manage.py recount_tasks` rebuilds it from scratch."""

    product = models.TextField()
    version = models.TextField()
    status = models.TextField(blank=True)
    kind = models.TextField()
    n = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.product} {self.version} {self.status or '∅'} {self.kind}: {self.n:+d}"


class ItemCount(models.Model):
    """How many catalog items there are per kind: a delta log like TaskCount, kept by the same triggers."""

    kind = models.TextField()
    n = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.kind}: {self.n:+d}"


class EventSource(models.TextChoices):
    USER = "user", "Operator"
    ADMIN = "admin", "Admin action"
    SYNC = "sync", "Scheduled sync"
    WEBHOOK = "webhook", "Webhook"
    IMPORT = "import", "Import"
    BULK = "bulk", "Bulk operation"


class EventAction(models.TextChoices):
    CREATE = "create", "Create"
    DEACTIVATE = "deactivate", "Deactivate"
    REFRESH = "refresh", "Refresh"
    RETRY = "retry", "Retry"
    DISCOVER = "discover", "Found at Vionlabs"
    SYNC_FAILED = "sync_failed", "Could not reach Vionlabs"


class TaskEvent(models.Model):
    """Append-only history of a task: one row per change or attempted change."""

    task = models.ForeignKey(ProductTask, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=16, choices=EventSource, default=EventSource.USER)
    operation = models.ForeignKey(
        "Operation", null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    action = models.CharField(max_length=16, choices=EventAction)
    status_before = models.TextField(blank=True)
    status_after = models.TextField(blank=True)
    error = models.TextField(blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["task", "created_at"], name="event_task_time_idx")]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.status_before or '∅'} → {self.status_after or '∅'}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValueError("TaskEvent is append-only: history rows are never changed.")
        super().save(*args, **kwargs)

    @property
    def actor_label(self) -> str:
        if self.actor is not None:
            return self.actor.get_username()
        return f"system ({self.get_source_display().lower()})"


class ProductSetting(models.Model):
    """Which products this organisation uses, with their defaults. Pages show columns for enabled ones."""

    product = models.CharField(max_length=32, choices=ProductChoices, unique=True)
    enabled = models.BooleanField(default=True)
    default_version = models.CharField(max_length=VERSION_MAX_LENGTH)
    default_priority = models.CharField(max_length=8, choices=PriorityChoices, default=PriorityChoices.LOW)
    position = models.PositiveSmallIntegerField(default=0)
    # In flight for longer than this counts as stuck. Empty: derived from past durations (95th percentile),
    # or the site-wide default while there is too little history.
    stuck_after = models.DurationField(null=True, blank=True)
    # Which kinds of item the product is requested for. Vionlabs addresses "a movie or series item", and
    # some results answer at series level, so whether series or seasons get their own task is the
    # organisation's choice per product. Default: standalone items and episodes (the ones with video).
    applies_to = models.JSONField(
        default=default_applies_to,
        validators=[validate_applies_to],
        help_text="Kinds of item this product is requested for: standalone, episode, season, series.",
    )

    objects = ProductSettingQuerySet.as_manager()

    class Meta:
        ordering = ["position", "product"]

    def __str__(self) -> str:
        return self.get_product_display()

    DEFAULT_STUCK_AFTER = dt.timedelta(hours=6)

    def applies(self, kind: str) -> bool:
        """Whether this product is requested for items of `kind`."""
        return kind in self.applies_to

    @property
    def applies_to_text(self) -> str:
        """The kinds in words, e.g. "standalone items and episodes"."""
        names = [KIND_PLURALS[kind] for kind in ItemKind.values if kind in self.applies_to]
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"

    def not_applicable_reason(self, kind: str) -> str:
        """Why an item of `kind` gets no task of this product ("" when it does)."""
        if self.applies(kind):
            return ""
        return f"{self.get_product_display()} is set to apply to {self.applies_to_text} only"

    @property
    def container_kinds_covered_by_episodes(self) -> tuple[str, ...]:
        """Container kinds the product does not apply to: a bulk operation covers their episodes instead."""
        return tuple(kind for kind in ItemKind.CONTAINERS if kind not in self.applies_to)


class OperationKind(models.TextChoices):
    CREATE = "create", "Create tasks"
    REFRESH = "refresh", "Refresh"
    DEACTIVATE = "deactivate", "Deactivate"
    RETRY = "retry", "Retry failed"


class OperationState(models.TextChoices):
    QUEUED = "queued", "Queued"
    FREEZING = "freezing", "Freezing the set"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    CANCELLING = "cancelling", "Cancelling"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"

    # Filled in below the class (inside it, it would become a member).
    ACTIVE: ClassVar[frozenset[str]]


class Operation(models.Model):
    """One bulk action over a frozen set of items, run in the background."""

    kind = models.CharField(max_length=16, choices=OperationKind)
    state = models.CharField(max_length=16, choices=OperationState, default=OperationState.QUEUED)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Moved while the set is frozen and whenever a runner renews its chunk's lease (also while it waits on a
    # 429): an active operation whose heartbeat stops lost its workers (a restart, a crash) and is resumed by
    # the scheduler (operations.operation_resume_stale).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The one-time token of the preview that confirmed it: a second confirmation of the same preview (a double
    # submit, a reload) finds this operation instead of starting another.
    token = models.CharField(max_length=64, unique=True, null=True, blank=True)
    reason = models.TextField()
    # product, version, priority, the filter it was built from, the operation it retries.
    params = models.JSONField(default=dict, blank=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def processed(self) -> int:
        return self.done + self.skipped + self.failed

    @property
    def is_active(self) -> bool:
        return self.state in OperationState.ACTIVE


#: Not ended yet: the run may still send requests, and the page keeps polling.
OperationState.ACTIVE = frozenset(
    {OperationState.QUEUED.value, OperationState.FREEZING.value, OperationState.RUNNING.value,
     OperationState.CANCELLING.value}
)  # fmt: skip


class OperationItemState(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class OperationItem(models.Model):
    """One member of an operation's frozen set, with its outcome."""

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="items")
    item = models.ForeignKey(CatalogItem, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=16, choices=OperationItemState, default=OperationItemState.PENDING)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["operation", "item"], name="operation_item_unique"),
        ]
        indexes = [models.Index(fields=["operation", "state"], name="operation_item_state_idx")]

    def __str__(self) -> str:
        return f"{self.operation} · {self.item_id} · {self.state}"


class ChunkState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"


class OperationChunk(models.Model):
    """A slice of an operation's frozen set (its items with `first_item_id <= item_id <= last_item_id`) that
    one runner at a time owns: claimed with SKIP LOCKED by any worker process, held by a lease the runner
    renews; a lease that runs out (its worker died) lets another runner take the chunk over. The counters are
    what the chunk's rows said when last counted: the operation's counters move by the difference."""

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="chunks")
    first_item_id = models.BigIntegerField()
    last_item_id = models.BigIntegerField()
    size = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=ChunkState, default=ChunkState.PENDING)
    owner = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    done = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["operation", "state"], name="operation_chunk_state_idx")]

    def __str__(self) -> str:
        return f"{self.operation} · items {self.first_item_id}-{self.last_item_id} · {self.state}"


class Selection(models.Model):
    """Items chosen one by one (catalog checkboxes, the admin's selection, "select all" included), kept on the
    server under a token so that a preview and its confirmation carry one field, however many items."""

    token = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    size = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"selection of {self.size} items"


class SelectionItem(models.Model):
    selection = models.ForeignKey(Selection, on_delete=models.CASCADE, related_name="rows")
    item = models.ForeignKey(CatalogItem, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["selection", "item"], name="selection_item_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.selection_id} · {self.item_id}"


#: `UpstreamHealth.name` of the Vionlabs API, the one upstream.
UPSTREAM_NAME = "vionlabs"


class UpstreamHealth(models.Model):
    """How reaching Vionlabs has gone lately: one row per upstream (`name=UPSTREAM_NAME`). Written by the
    services after every call; read by the scheduler's circuit breaker and by the dashboard's banner."""

    name = models.CharField(max_length=32, unique=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    # Set at the first failure after a success, cleared by the next success: "unreachable since".
    failing_since = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # While in the future, the scheduler does not call Vionlabs (circuit open).
    paused_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "upstream health"

    def __str__(self) -> str:
        return self.name

    @property
    def is_failing(self) -> bool:
        return self.failing_since is not None


class WebhookDelivery(models.Model):
    """One webhook call from Vionlabs that passed the secret check. The unique key (item, product, version,
    timestamp as sent) turns a repeated delivery into a counted no-op instead of a second refresh."""

    inventory_id = models.CharField(max_length=INVENTORY_ID_MAX_LENGTH)
    product = models.CharField(max_length=32)
    version = models.CharField(max_length=VERSION_MAX_LENGTH)
    # The payload's `timestamp`, kept as sent (its format is not documented); part of the dedupe key.
    sent_at = models.CharField(max_length=64)
    kind = models.CharField(max_length=32, blank=True, help_text="The payload's `type`.")
    item = models.ForeignKey(CatalogItem, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    refresh_enqueued = models.BooleanField(default=False)
    duplicates = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["inventory_id", "product", "version", "sent_at"], name="webhook_delivery_unique"
            )
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.inventory_id} · {self.product} {self.version} @ {self.sent_at}"


class SyncBudget(models.Model):
    """Item-level calls the schedulers may still make this minute: one row shared by every scheduler process,
    locked while a batch is claimed, so SYNC_REQUESTS_PER_MINUTE holds across machines."""

    name = models.CharField(max_length=32, unique=True)
    window_start = models.DateTimeField(null=True, blank=True)
    used = models.PositiveIntegerField(default=0)
    # When a scheduler last finished a cycle (any machine): /readyz reports its age.
    last_cycle_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.used} since {self.window_start}"


class TaskResult(models.Model):
    """The last answer of a done task's Results API for one set of parameters: a cache the item page reads
    before it asks Vionlabs again, kept as the JSON that came (API key redacted) so it can be inspected."""

    task = models.ForeignKey(ProductTask, on_delete=models.CASCADE, related_name="results")
    # SHA-256 of the parameters as canonical JSON (`params`): one row per task and parameter set.
    params_key = models.CharField(max_length=64)
    params = models.JSONField(default=dict, blank=True)
    fetched_at = models.DateTimeField()
    data = models.JSONField(help_text="The answer as received, with the API key redacted.")

    class Meta:
        ordering = ["-fetched_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["task", "params_key"], name="task_result_unique_params"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} · {self.params or 'defaults'} @ {self.fetched_at:%Y-%m-%d %H:%M}"


class AlertCursor(models.Model):
    """How far the alert digests have got: one row (`name="digest"`), locked while a scheduler decides to send,
    so that concurrent schedulers never report the same event twice."""

    name = models.CharField(max_length=32, unique=True)
    # The last TaskEvent already reported (failures are events with status_after "failed").
    last_event_id = models.BigIntegerField(default=0)
    # Tasks that became stuck up to this moment have been reported.
    stuck_checked_at = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    last_sent_to = models.TextField(blank=True)
    last_summary = models.TextField(blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.name}: event {self.last_event_id}, sent {self.last_sent_at}"
