"""A typed client for the Vionlabs Tasks API. Pure Python: nothing here imports Django."""

from .types import (
    FINAL_STATUSES,
    IN_FLIGHT_STATUSES,
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
    "CatalogEntry",
    "ItemTask",
    "Link",
    "Priority",
    "Product",
    "Status",
    "TaskState",
]
