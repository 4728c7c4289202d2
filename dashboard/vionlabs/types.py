"""The values and shapes of the Vionlabs Tasks API, as plain Python: no Django, no `requests`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Product(StrEnum):
    """The 16 products of the API's `ProductType`, in the documented order."""

    ADBREAKS = "adbreaks"
    CONTEXTUAL_ADBREAK = "contextual_adbreak"
    EMOTIONS = "emotions"
    FINGERPRINT = "fingerprint"
    FINGERPRINTPLUS = "fingerprintplus"
    JITPREVIEWS = "jitpreviews"
    JITTHUMBNAILS = "jitthumbnails"
    MARKERS = "markers"
    NUDITY = "nudity"
    PROFANITY = "profanity"
    SEMANTIC = "semantic"
    SIMILAR = "similar"
    CONTENT_SUMMARY = "content_summary"
    SEMANTIC_SCENES = "semantic_scenes"
    VERTICAL_CONVERSION = "vertical_conversion"
    SCENE_TAGS = "scene_tags"


class Priority(StrEnum):
    """`TaskPriority`; the API's default is `low`."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Status(StrEnum):
    """The task statuses known so far. The vendor has not published the full list: a status is carried as a
    plain string everywhere, and a value not listed here passes through unchanged."""

    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    DEACTIVATED = "deactivated"


#: The longest status the client accepts. Statuses are free strings and are stored whole; this bound only keeps a
#: hostile answer out of the database's indexes (a PostgreSQL btree entry holds at most ~2,700 bytes, and
#: 500 characters of 4-byte UTF-8 plus product and version stay under it). A longer one is a bad response.
STATUS_MAX_LENGTH = 500

#: Still being worked on at Vionlabs: worth asking again later.
IN_FLIGHT_STATUSES: frozenset[str] = frozenset({Status.PENDING, Status.PROCESSING})
#: Will not change without an action of ours. An unknown status is in neither set: shown as it is,
#: never treated as final, never polled forever.
FINAL_STATUSES: frozenset[str] = frozenset({Status.DONE, Status.FAILED, Status.DEACTIVATED})


@dataclass(frozen=True, slots=True)
class Link:
    """One entry of a task's `_links`: the names are not documented, so they are kept as given."""

    name: str
    method: str
    href: str


@dataclass(frozen=True, slots=True)
class TaskState:
    """What the API says of one task (GET, POST and DELETE on a task all answer with this)."""

    status: str
    error: str | None = None
    links: tuple[Link, ...] = ()


@dataclass(frozen=True, slots=True)
class ItemTask:
    """One task of an item, as listed by the item-level GET."""

    product: str
    version: str
    status: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One item of the Vionlabs Catalog API listing."""

    id: str
    vionlabs_id: str | None
    type: str
