"""A typed client for the Vionlabs Tasks and Results APIs. Pure Python: nothing here imports Django."""

from __future__ import annotations

from .client import VionlabsClient
from .errors import (
    FieldError,
    VionlabsBadResponse,
    VionlabsError,
    VionlabsNoAccess,
    VionlabsNoResult,
    VionlabsNotFound,
    VionlabsOutOfTime,
    VionlabsRateLimited,
    VionlabsRejected,
    VionlabsUnauthorized,
    VionlabsUnavailable,
)
from .results import (
    AdBreakRank,
    AdBreaksResult,
    ContextualAdBreaksResult,
    ContextualBreak,
    GenericResult,
    JsonValue,
    MarkersResult,
)
from .throttle import Throttle
from .types import (
    FINAL_STATUSES,
    IN_FLIGHT_STATUSES,
    STATUS_MAX_LENGTH,
    CatalogEntry,
    ItemTask,
    Link,
    Priority,
    Product,
    Status,
    TaskState,
)

__all__ = [
    "FINAL_STATUSES",
    "IN_FLIGHT_STATUSES",
    "STATUS_MAX_LENGTH",
    "AdBreakRank",
    "AdBreaksResult",
    "CatalogEntry",
    "ContextualAdBreaksResult",
    "ContextualBreak",
    "FieldError",
    "GenericResult",
    "ItemTask",
    "JsonValue",
    "Link",
    "MarkersResult",
    "Priority",
    "Product",
    "Status",
    "TaskState",
    "Throttle",
    "VionlabsBadResponse",
    "VionlabsClient",
    "VionlabsError",
    "VionlabsNoAccess",
    "VionlabsNoResult",
    "VionlabsNotFound",
    "VionlabsOutOfTime",
    "VionlabsRateLimited",
    "VionlabsRejected",
    "VionlabsUnauthorized",
    "VionlabsUnavailable",
]
