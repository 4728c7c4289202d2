"""Django admin for the catalog: browse everything, edit items and product settings, act on tasks.

Task state is never edited by hand here: a task's status, history and upstream health change only through
the services (the admin actions below call them), so the admin and the dashboard behave the same and every
change has its TaskEvent. Changelists use `list_select_related` so their query count does not grow with rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import ActionLocation
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from dashboard.vionlabs.errors import VionlabsError

from . import services
from .admin_import import catalog_import_view_for
from .forms import ProductSettingForm, parse_id
from .models import (
    CatalogItem,
    EventSource,
    Operation,
    OperationItem,
    OperationKind,
    ProductSetting,
    ProductTask,
    SyncBudget,
    TaskEvent,
    TaskResult,
    UpstreamHealth,
    WebhookDelivery,
)
from .permissions import OPERATE_PERMISSION
from .views.operations import preview_for_items

#: The fields of one stored `_links` entry, in the order the admin shows them.
LINK_KEYS = ("method", "name", "href")

#: Admin actions call Vionlabs once per row inside the web request for at most this many rows; over it they
#: open the bulk operation's preview for the same rows (a background job with progress and cancel), so a
#: request never loops over many calls that could hold a web worker past its timeout.
ADMIN_ACTION_LIMIT = 10


class ReadOnlyAdmin(admin.ModelAdmin):
    """A view of records other code writes: no add, change or delete from the admin."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class OperateTasksMixin:
    """Actions that call Vionlabs need the operators' permission, not just change rights on the model."""

    def has_operate_tasks_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(OPERATE_PERMISSION)

    def response_action(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        action_location: ActionLocation = ActionLocation.CHANGE_LIST,
    ) -> HttpResponse | None:
        # Django filters by the posted ids as given: "abc", "²" or a 5,000-digit id would be a 500.
        if any(parse_id(value) is None for value in request.POST.getlist(ACTION_CHECKBOX_NAME)):
            messages.error(request, "The selection holds something that is not a row id; nothing was done.")
            return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset, action_location)  # type: ignore[misc]


def _short(text: str, length: int = 80) -> str:
    return Truncator(text).chars(length)


def _run_per_row(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    calls: Sequence[tuple[str, Callable[[], str]]],
    *,
    verb: str,
) -> None:
    """Run each (label, call) and report every row's outcome, then a summary line (callers send more than
    ADMIN_ACTION_LIMIT rows to the bulk preview instead)."""
    done = skipped = failed = 0
    for label, call in calls:
        try:
            outcome = call()
        except services.ActionRefused as refused:
            skipped += 1
            modeladmin.message_user(request, f"{label}: skipped: {refused}", messages.WARNING)
        except VionlabsError as error:
            failed += 1
            modeladmin.message_user(request, f"{label}: failed: {error}", messages.ERROR)
        else:
            done += 1
            modeladmin.message_user(request, f"{label}: {outcome}", messages.SUCCESS)
    level = messages.ERROR if failed else messages.WARNING if skipped else messages.SUCCESS
    modeladmin.message_user(
        request, f"{verb}: {done} done, {skipped} skipped, {failed} failed of {len(calls)}.", level
    )


def _status_change(before: str, task: ProductTask) -> str:
    after = task.status or "no answer"
    return f"{before or 'no answer'} → {after}" if before != task.status else f"still {after}"


def _actor(request: HttpRequest) -> User | None:
    """Who acts: the admin serves only logged-in staff, so never the anonymous user."""
    return services.acting_user(request.user)


def _default_settings() -> dict[str, ProductSetting]:
    return {setting.product: setting for setting in ProductSetting.objects.enabled()}


def _create_default(
    request: HttpRequest, *, item: CatalogItem, product: str, defaults: dict[str, ProductSetting]
) -> str:
    setting = defaults.get(product)
    if setting is None or not setting.default_version:
        raise services.ActionRefused(
            f"{product} has no enabled product setting with a default version; set one under Product settings."
        )
    task = services.task_create(
        item=item,
        product=product,
        version=setting.default_version,
        priority=setting.default_priority,
        actor=_actor(request),
        source=EventSource.ADMIN,
    )
    return f"created {product} {setting.default_version}: {task.status or 'no answer yet'}"


def _to_bulk_preview(
    request: HttpRequest, items: QuerySet[CatalogItem], *, kind: str, product: str = "", version: str = ""
) -> HttpResponse:
    """More rows than an action runs in the request: the bulk operation's preview for the same items (the
    selection is kept on the server, "select all" included), to confirm and run in the background."""
    return preview_for_items(request, items, kind=kind, product=product, version=version)


def _tasks_to_bulk_preview(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ProductTask], *, kind: str
) -> HttpResponse | None:
    """The bulk preview for many selected tasks, when they share one product and version (an operation acts
    on one); otherwise a message saying so, and None."""
    keys = list(queryset.order_by().values_list("product", "version").distinct()[:2])
    if len(keys) != 1:
        modeladmin.message_user(
            request,
            f"More than {ADMIN_ACTION_LIMIT} tasks of several products or versions: a bulk operation acts on one "
            "product and version, so filter the list by product and version first.",
            messages.ERROR,
        )
        return None
    product, version = keys[0]
    items = CatalogItem.objects.filter(pk__in=queryset.order_by().values("item_id"))
    return _to_bulk_preview(request, items, kind=kind, product=product, version=version)


# --- Catalog items --------------------------------------------------------------------------------------


class ProductTaskInline(admin.TabularInline):
    """An item's tasks, read-only: they change through the actions, which record history."""

    model = ProductTask
    extra = 0
    can_delete = False
    show_change_link = True
    fields: ClassVar[tuple[str, ...]] = (
        "product",
        "version",
        "priority",
        "status",
        "error_short",
        "last_checked_at",
        "sync_error_short",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ProductTask]:
        # The row's link text is str(task), which names the item: fetch it with the rows.
        return super().get_queryset(request).select_related("item")

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="error")
    def error_short(self, task: ProductTask) -> str:
        return _short(task.error)

    @admin.display(description="sync error")
    def sync_error_short(self, task: ProductTask) -> str:
        return _short(task.sync_error)


@admin.register(CatalogItem)
class CatalogItemAdmin(OperateTasksMixin, admin.ModelAdmin):
    list_display = ["inventory_id", "title", "kind", "parent", "vionlabs_id", "updated_at"]
    list_filter = ["kind"]
    search_fields = ["inventory_id", "title"]
    list_select_related = ["parent"]
    # A select of every item would be a megabyte-sized page on a real catalog.
    raw_id_fields = ["parent"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [ProductTaskInline]
    actions = ["create_default_tasks", "refresh_items", "start_bulk_operation"]

    def get_urls(self) -> list:
        # The upload page (templates/admin/catalog/catalogitem/), the same importer as `import_catalog`.
        upload = path(
            "import/",
            self.admin_site.admin_view(catalog_import_view_for(self)),
            name="catalog_catalogitem_import",
        )
        return [upload, *super().get_urls()]

    def get_readonly_fields(self, request: HttpRequest, obj: CatalogItem | None = None) -> list[str]:
        # The inventory id is the key at Vionlabs; renaming it would orphan the item's tasks there.
        fields = list(super().get_readonly_fields(request, obj))
        return ["inventory_id", *fields] if obj is not None else fields

    @admin.action(
        description="Create tasks for every enabled product (default versions)", permissions=["operate_tasks"]
    )
    def create_default_tasks(
        self, request: HttpRequest, queryset: QuerySet[CatalogItem]
    ) -> HttpResponse | None:
        if queryset.count() > ADMIN_ACTION_LIMIT:
            self.message_user(
                request,
                f"More than {ADMIN_ACTION_LIMIT} items: the tasks are created by a bulk operation in the background, "
                "one product at a time (choose the product in the preview).",
                messages.INFO,
            )
            return _to_bulk_preview(request, queryset, kind=OperationKind.CREATE)
        defaults = _default_settings()
        if not defaults:
            self.message_user(request, "No product is enabled under Product settings.", messages.ERROR)
            return None
        calls = [
            (
                f"{item.inventory_id} · {product}",
                partial(_create_default, request, item=item, product=product, defaults=defaults),
            )
            for item in queryset
            for product in defaults
        ]
        _run_per_row(self, request, calls, verb="Create")
        return None

    @admin.action(
        description="Refresh all tasks of the selected items from Vionlabs", permissions=["operate_tasks"]
    )
    def refresh_items(self, request: HttpRequest, queryset: QuerySet[CatalogItem]) -> HttpResponse | None:
        if queryset.count() > ADMIN_ACTION_LIMIT:
            return _to_bulk_preview(request, queryset, kind=OperationKind.REFRESH)

        def refresh(item: CatalogItem) -> str:
            tasks = services.item_refresh(item=item, actor=_actor(request), source=EventSource.ADMIN)
            return f"{len(tasks)} task(s) read"

        _run_per_row(
            self, request, [(str(item), partial(refresh, item)) for item in queryset], verb="Refresh"
        )
        return None

    @admin.action(
        description="Bulk operation on the selected items (preview, then run in the background)",
        permissions=["operate_tasks"],
    )
    def start_bulk_operation(self, request: HttpRequest, queryset: QuerySet[CatalogItem]) -> HttpResponse:
        # Any number of items ("select all" too): the ids are kept on the server, the work runs as an
        # Operation with progress, not inside this request.
        return preview_for_items(request, queryset)


# --- Tasks ----------------------------------------------------------------------------------------------


@admin.register(ProductTask)
class ProductTaskAdmin(OperateTasksMixin, admin.ModelAdmin):
    list_display = [
        "inventory_id",
        "product",
        "version",
        "priority",
        "status_display",
        "last_checked_at",
        "status_changed_at",
        "sync_error_short",
        "action_in_progress",
    ]
    list_display_links = ["inventory_id"]
    list_filter = ["status", "product", "version", "priority"]
    search_fields = ["item__inventory_id"]
    list_select_related = ["item"]
    ordering = ["item__inventory_id", "product", "version"]
    show_full_result_count = False
    actions = ["refresh_tasks", "deactivate_tasks", "create_default_version"]
    fields: ClassVar[tuple[str, ...]] = (
        "item",
        "product",
        "version",
        "priority",
        "status",
        "error",
        "links_display",
        "requested_by",
        "requested_at",
        "last_checked_at",
        "status_changed_at",
        "sync_error",
        "sync_error_at",
        "action_in_progress",
        "action_started_at",
        "next_check_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A task row appears when Vionlabs is asked to create it (or a refresh finds it), never by hand.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Deleting a row would delete its history while the task lives on at Vionlabs.
        return False

    @admin.display(description="inventory id", ordering="item__inventory_id")
    def inventory_id(self, task: ProductTask) -> str:
        return task.item.inventory_id

    @admin.display(description="status", ordering="status")
    def status_display(self, task: ProductTask) -> str:
        return task.status or "(no answer yet)"

    @admin.display(description="sync error")
    def sync_error_short(self, task: ProductTask) -> str:
        return _short(task.sync_error, 60)

    @admin.display(description="links")
    def links_display(self, task: ProductTask) -> str:
        """Vionlabs' `_links` as text; the `results` link opens the dashboard's result view (the Vionlabs URL
        needs the API key, which nobody here may see)."""
        rows = []
        for link in task.links if isinstance(task.links, list) else []:
            if not isinstance(link, dict):
                continue
            if str(link.get("name", "")).lower() == "results":
                href = reverse("catalog:task-result", args=[task.pk])
                rows.append(format_html('<li>{} <a href="{}">results</a></li>', link.get("method", ""), href))
            else:
                rows.append(
                    format_html("<li>{} {} <code>{}</code></li>", *(link.get(k, "") for k in LINK_KEYS))
                )
        return (
            format_html("<ul>{}</ul>", format_html_join("", "{}", ((row,) for row in rows))) if rows else "—"
        )

    @admin.action(description="Refresh from Vionlabs", permissions=["operate_tasks"])
    def refresh_tasks(self, request: HttpRequest, queryset: QuerySet[ProductTask]) -> HttpResponse | None:
        if queryset.count() > ADMIN_ACTION_LIMIT:
            return _tasks_to_bulk_preview(self, request, queryset, kind=OperationKind.REFRESH)

        def refresh(task: ProductTask) -> str:
            before = task.status
            task = services.task_refresh(task=task, actor=_actor(request), source=EventSource.ADMIN)
            return _status_change(before, task)

        calls = [(str(task), partial(refresh, task)) for task in queryset.select_related("item")]
        _run_per_row(self, request, calls, verb="Refresh")
        return None

    @admin.action(description="Deactivate at Vionlabs", permissions=["operate_tasks"])
    def deactivate_tasks(self, request: HttpRequest, queryset: QuerySet[ProductTask]) -> HttpResponse | None:
        if queryset.count() > ADMIN_ACTION_LIMIT:
            return _tasks_to_bulk_preview(self, request, queryset, kind=OperationKind.DEACTIVATE)

        def deactivate(task: ProductTask) -> str:
            before = task.status
            task = services.task_deactivate(task=task, actor=_actor(request), source=EventSource.ADMIN)
            return f"deactivated ({_status_change(before, task)})"

        calls = [(str(task), partial(deactivate, task)) for task in queryset.select_related("item")]
        _run_per_row(self, request, calls, verb="Deactivate")
        return None

    @admin.action(
        description="Create for the product's default version (Product settings)",
        permissions=["operate_tasks"],
    )
    def create_default_version(
        self, request: HttpRequest, queryset: QuerySet[ProductTask]
    ) -> HttpResponse | None:
        if queryset.count() > ADMIN_ACTION_LIMIT:
            products = list(queryset.order_by().values_list("product", flat=True).distinct()[:2])
            setting = (
                ProductSetting.objects.filter(product=products[0]).first() if len(products) == 1 else None
            )
            if setting is None:
                self.message_user(
                    request,
                    f"More than {ADMIN_ACTION_LIMIT} tasks of several products (or of a product without settings): a "
                    "bulk operation acts on one product, so filter the list by product first.",
                    messages.ERROR,
                )
                return None
            items = CatalogItem.objects.filter(pk__in=queryset.order_by().values("item_id"))
            return _to_bulk_preview(
                request,
                items,
                kind=OperationKind.CREATE,
                product=setting.product,
                version=setting.default_version,
            )
        defaults = _default_settings()
        # One create per (item, product), however many versions of it were selected.
        pairs: dict[tuple[int, str], CatalogItem] = {}
        for task in queryset.select_related("item"):
            pairs.setdefault((task.item_id, task.product), task.item)
        calls = [
            (
                f"{item.inventory_id} · {product}",
                partial(_create_default, request, item=item, product=product, defaults=defaults),
            )
            for (_, product), item in pairs.items()
        ]
        _run_per_row(self, request, calls, verb="Create")
        return None


@admin.register(TaskEvent)
class TaskEventAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "task",
        "action",
        "status_before",
        "status_after",
        "actor_display",
        "source",
        "operation",
    ]
    list_filter = ["action", "source"]
    search_fields = ["task__item__inventory_id"]
    list_select_related = ["task__item", "actor", "operation"]
    show_full_result_count = False

    @admin.display(description="actor")
    def actor_display(self, event: TaskEvent) -> str:
        return event.actor_label


# --- Settings and operations ----------------------------------------------------------------------------


@admin.register(ProductSetting)
class ProductSettingAdmin(admin.ModelAdmin):
    form = ProductSettingForm
    list_display = [
        "product", "enabled", "position", "default_version", "default_priority", "applies_to_display",
        "stuck_after",
    ]  # fmt: skip
    list_editable = ["enabled", "position", "default_version", "default_priority"]
    list_display_links = ["product"]
    ordering = ["position", "product"]

    @admin.display(description="applies to")
    def applies_to_display(self, setting: ProductSetting) -> str:
        return ", ".join(setting.applies_to)


@admin.register(Operation)
class OperationAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "state", "created_by", "created_at", "total", "done", "skipped", "failed"]
    list_filter = ["kind", "state"]
    list_select_related = ["created_by"]
    search_fields = ["reason"]


@admin.register(OperationItem)
class OperationItemAdmin(ReadOnlyAdmin):
    list_display = ["id", "operation", "inventory_id", "state", "error", "finished_at"]
    list_filter = ["state"]
    list_select_related = ["operation", "item"]
    search_fields = ["item__inventory_id"]

    @admin.display(description="inventory id", ordering="item__inventory_id")
    def inventory_id(self, row: OperationItem) -> str:
        return row.item.inventory_id


@admin.register(UpstreamHealth)
class UpstreamHealthAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "last_success_at",
        "last_failure_at",
        "failing_since",
        "consecutive_failures",
        "paused_until",
        "last_error",
    ]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "received_at",
        "inventory_id",
        "product",
        "version",
        "sent_at",
        "refresh_enqueued",
        "duplicates",
    ]
    search_fields = ["inventory_id"]


@admin.register(SyncBudget)
class SyncBudgetAdmin(ReadOnlyAdmin):
    list_display = ["name", "window_start", "used"]


@admin.register(TaskResult)
class TaskResultAdmin(ReadOnlyAdmin):
    """The saved copies of results (key redacted): to see what Vionlabs answered, and when."""

    list_display = ["task", "params", "fetched_at"]
    list_select_related = ["task__item"]
    search_fields = ["task__item__inventory_id"]
    list_filter = ["task__product"]
