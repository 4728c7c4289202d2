from __future__ import annotations

from django.urls import path

from .views import actions, export, operations, pages, poll, results, webhook

app_name = "catalog"

urlpatterns = [
    path("", pages.overview, name="overview"),
    path("items/", pages.item_list, name="item-list"),
    path("items/export.csv", export.item_export, {"fmt": "csv"}, name="item-export-csv"),
    path("items/export.jsonl", export.item_export, {"fmt": "jsonl"}, name="item-export-jsonl"),
    path("items/<int:pk>/", pages.item_detail, name="item-detail"),
    # A link that survives a re-import (new pk): any characters, slashes included.
    path("items/by-id/<path:inventory_id>", pages.item_by_id, name="item-by-id"),
    path("items/<int:pk>/children/", pages.item_children, name="item-children"),
    path("items/<int:pk>/tasks/", actions.task_create, name="task-create"),
    path("items/<int:pk>/refresh/", actions.item_refresh, name="item-refresh"),
    path("tasks/", pages.task_list, name="task-list"),
    path("tasks/export.csv", export.task_export, {"fmt": "csv"}, name="task-export-csv"),
    path("tasks/export.jsonl", export.task_export, {"fmt": "jsonl"}, name="task-export-jsonl"),
    path("tasks/<int:pk>/refresh/", actions.task_refresh, name="task-refresh"),
    path("tasks/<int:pk>/deactivate/", actions.task_deactivate, name="task-deactivate"),
    path("tasks/<int:pk>/retry/", actions.task_retry, name="task-retry"),
    path("tasks/<int:pk>/result/", results.task_result, name="task-result"),
    path("tasks/<int:pk>/result/refresh/", results.task_result_refresh, name="task-result-refresh"),
    path("poll/", poll.poll, name="poll"),
    # One URL, two names: the list (GET) and the create (POST) are the same resource.
    path("operations/", operations.operations_root, name="operation-list"),
    path("operations/", operations.operations_root, name="operation-create"),
    path("operations/preview/", operations.operation_preview, name="operation-preview"),
    path("operations/<int:pk>/", operations.operation_detail, name="operation-detail"),
    path("operations/<int:pk>/progress/", operations.operation_progress, name="operation-progress"),
    path("operations/<int:pk>/cancel/", operations.operation_cancel, name="operation-cancel"),
    path(
        "operations/<int:pk>/retry-failures/",
        operations.operation_retry_failures,
        name="operation-retry-failures",
    ),
    path("webhooks/vionlabs/", webhook.webhook_vionlabs, name="webhook-vionlabs"),
]
