"""A typed client for the Vionlabs Tasks API. Pure Python: nothing here imports Django."""

from .client import VionlabsClient
from .errors import (
    FieldError,
    VionlabsBadResponse,
    VionlabsError,
    VionlabsNotFound,
    VionlabsRateLimited,
    VionlabsRejected,
    VionlabsUnauthorized,
    VionlabsUnavailable,
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
    "CatalogEntry",
    "FieldError",
    "ItemTask",
    "Link",
    "Priority",
    "Product",
    "Status",
    "TaskState",
    "Throttle",
    "VionlabsBadResponse",
    "VionlabsClient",
    "VionlabsError",
    "VionlabsNotFound",
    "VionlabsRateLimited",
    "VionlabsRejected",
    "VionlabsUnauthorized",
    "VionlabsUnavailable",
]
