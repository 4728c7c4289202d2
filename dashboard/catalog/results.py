"""A done task's result as the item page shows it: the parameters it was asked with, what the service returns
(`TaskResultView`), and the presenters that turn a result into a timeline, rows of context or a JSON tree.

No HTTP and no queries here: `services.task_results()` fetches and caches; these functions only read what it
returns. Times on the timelines are drawn as inline SVG whose positions are attributes (x, width), computed
here in a fixed 1000-unit-wide coordinate space, so the page needs neither script nor inline style (CSP).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from dashboard.vionlabs import (
    AdBreaksResult,
    ContextualAdBreaksResult,
    GenericResult,
    JsonValue,
    MarkersResult,
    Product,
)
from dashboard.vionlabs.errors import (
    VionlabsBadResponse,
    VionlabsError,
    VionlabsNoAccess,
    VionlabsNoResult,
    VionlabsRateLimited,
    VionlabsRejected,
    VionlabsUnauthorized,
    VionlabsUnavailable,
)
from dashboard.vionlabs.results import (
    parse_adbreaks,
    parse_contextual_adbreaks,
    parse_generic,
    parse_markers,
)

if TYPE_CHECKING:  # models import nothing from here; the import is for the annotations only
    from .models import CatalogItem, ProductTask

type AnyResult = AdBreaksResult | ContextualAdBreaksResult | MarkersResult | GenericResult

#: Products whose result API takes the separation and skip parameters (minutes).
PARAM_PRODUCTS = frozenset({Product.ADBREAKS.value, Product.CONTEXTUAL_ADBREAK.value})
PARAM_NAMES = ("minimum_separation", "maximum_separation", "skip_first", "skip_last")
#: "Try again in N s" when Vionlabs did not say when.
RETRY_HINT_SECONDS = 30


# --- parameters -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResultParams:
    """The minute parameters of the ad-break result APIs; None = not sent (Vionlabs' own default)."""

    minimum_separation: float | None = None
    maximum_separation: float | None = None
    skip_first: float | None = None
    skip_last: float | None = None

    def as_dict(self) -> dict[str, float]:
        """The given values, whole numbers as ints (`2`, not `2.0`: one cache key, the URL Vionlabs documents)."""
        return {name: _plain(value) for name in PARAM_NAMES if (value := getattr(self, name)) is not None}

    @property
    def key(self) -> str:
        """What the cache is keyed by: the same parameters give the same key, whatever their order."""
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ResultParams:
        return cls(**{name: float(values[name]) for name in PARAM_NAMES if values.get(name) is not None})


def _plain(value: float) -> float:
    number = float(value)
    return int(number) if number.is_integer() else number


# --- what the service returns ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskResultView:
    """A task's result for one parameter set, and how current it is.

    - `fetched_now`: Vionlabs answered this request.
    - `stale`: the fetch failed; `result` (if any) is the cached one, as of `fetched_at`, never current.
    - `message`: what went wrong (or why there is nothing), in an operator's words; "" when all is well.
    """

    task: ProductTask
    params: ResultParams
    result: AnyResult | None = None
    fetched_at: dt.datetime | None = None
    fetched_now: bool = False
    stale: bool = False
    message: str = ""
    retry_after: int | None = None

    @property
    def kind(self) -> str:
        """Which rendering the fragment uses."""
        if isinstance(self.result, AdBreaksResult):
            return "adbreaks"
        if isinstance(self.result, ContextualAdBreaksResult):
            return "contextual"
        if isinstance(self.result, MarkersResult):
            return "markers"
        return "generic" if self.result is not None else "none"


def parse_result(product: str, data: JsonValue, *, inventory_id: str) -> AnyResult:
    """A stored answer read again with the client's own parsers (the cache keeps JSON, not objects)."""
    if product == Product.ADBREAKS:
        return parse_adbreaks(data, inventory_id=inventory_id)
    if product == Product.CONTEXTUAL_ADBREAK:
        return parse_contextual_adbreaks(data, inventory_id=inventory_id)
    if product == Product.MARKERS:
        return parse_markers(data, ident=inventory_id)
    return parse_generic(data, product=product, inventory_id=inventory_id)


def raw_of(result: AnyResult) -> JsonValue:
    """The answer as received, to be cached."""
    if isinstance(result, GenericResult):
        return result.data
    return dict(result.raw)


# The client ends its messages with the call it made ("[GET /results/… , inventory_id 'x']").
_CALL_CONTEXT = re.compile(r"\s*\[(?:GET|POST|PUT|DELETE) /[^\]]*\]\s*$")


def describe_result_error(error: VionlabsError, *, product_label: str) -> tuple[str, int | None]:
    """(message, seconds to wait or None) for a failed result fetch. The caller redacts the message."""
    detail = _CALL_CONTEXT.sub("", str(error))
    if isinstance(error, VionlabsNoAccess | VionlabsUnauthorized):
        return (
            f"Your Vionlabs key has no access to the {product_label} results API "
            f"(HTTP {error.status_code or 'refused'}). Tasks are not affected; ask Vionlabs to enable this "
            "API for the key.",
            None,
        )
    if isinstance(error, VionlabsNoResult):
        return (f"No result yet: Vionlabs has no {product_label} result for this item.", None)
    if isinstance(error, VionlabsRateLimited):
        wait = math.ceil(error.retry_after) if error.retry_after else RETRY_HINT_SECONDS
        return (f"Vionlabs did not answer: it is limiting our requests. Try again in {max(1, wait)} s.", wait)
    if isinstance(error, VionlabsUnavailable):
        how = f" (HTTP {error.status_code})" if error.status_code else " in time"
        return (f"Vionlabs did not answer{how}. Try again in {RETRY_HINT_SECONDS} s.", RETRY_HINT_SECONDS)
    if isinstance(error, VionlabsRejected):
        fields = "; ".join(str(d) for d in error.details)
        return (f"Vionlabs rejected the parameters: {fields or detail}", None)
    if isinstance(error, VionlabsBadResponse):
        return (f"Vionlabs answered with something we could not read: {detail}", None)
    return (f"Vionlabs could not give the result: {detail}", None)


def redact_json(value: JsonValue, redact: Any) -> JsonValue:
    """`value` with `redact(str)` applied to every string, keys included (the key may be echoed anywhere)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_json(v, redact) for v in value]
    if isinstance(value, dict):
        return {redact(k): redact_json(v, redact) for k, v in value.items()}
    return value


# --- times ----------------------------------------------------------------------------------------------


def hms(seconds: float | None) -> str:
    """`01:02:03` (to the nearest second); "" for None."""
    if seconds is None:
        return ""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


#: Keys that may hold the asset's runtime in a result (seconds).
RESULT_RUNTIME_KEYS = ("runtime", "duration", "runtime_seconds", "duration_seconds")
#: Item metadata keys that may hold the runtime, with the factor to seconds.
METADATA_RUNTIME_KEYS = (
    ("runtime_seconds", 1),
    ("duration_seconds", 1),
    ("runtime_minutes", 60),
    ("duration_minutes", 60),
)


def _positive(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def asset_runtime(result: AnyResult, item: CatalogItem | None, latest: float | None) -> tuple[float, str]:
    """(runtime in seconds, where it came from): the result's own runtime/duration field if it has one, else
    the item's metadata (`runtime_seconds`, `duration_seconds`, `runtime_minutes`, `duration_minutes`), else
    an estimate from the latest time in the result. Never shorter than that latest time."""
    raw: Mapping[str, Any] = {}
    if isinstance(result, GenericResult):
        raw = result.data if isinstance(result.data, dict) else {}
    else:
        raw = result.raw
    data = raw.get("data")
    inner: Mapping[str, Any] = data if isinstance(data, dict) else {}
    for source in (inner, raw):
        for name in RESULT_RUNTIME_KEYS:
            if (found := _positive(source.get(name))) is not None:
                return max(found, latest or 0), "result"
    metadata = item.metadata if item is not None and isinstance(item.metadata, dict) else {}
    for name, factor in METADATA_RUNTIME_KEYS:
        if (found := _positive(metadata.get(name))) is not None:
            return max(found * factor, latest or 0), "metadata"
    if latest is None:
        return 0.0, "unknown"
    return latest * 1.05 + 60, "estimated"


# --- timelines (inline SVG geometry) --------------------------------------------------------------------

WIDTH = 1000
_TICK_STEPS = (60, 120, 300, 600, 900, 1200, 1800, 3600, 7200)
#: Mark heights by rank: rank 1 tallest.
_RANK_HEIGHTS = {1: 64, 2: 44, 3: 28}
_BASELINE = 80


def _num(value: float) -> str:
    """SVG attribute text, never localised."""
    return f"{value:.2f}"


@dataclass(frozen=True, slots=True)
class Tick:
    x: str
    label: str


@dataclass(frozen=True, slots=True)
class Mark:
    """One point on the timeline (an ad-break candidate)."""

    seconds: float
    rank: int
    x: str
    y: str
    height: str

    @property
    def time(self) -> str:
        return hms(self.seconds)

    @property
    def rank_class(self) -> int:
        return min(self.rank, 4)


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of the asset (intro, recap, credits); `end` None means "to the end of the asset"."""

    kind: str
    label: str
    start: float
    end: float | None
    x: str
    width: str

    @property
    def start_time(self) -> str:
        return hms(self.start)

    @property
    def end_time(self) -> str:
        return hms(self.end)


@dataclass(frozen=True, slots=True)
class Timeline:
    runtime: float
    runtime_source: str
    ticks: tuple[Tick, ...]
    marks: tuple[Mark, ...] = ()
    segments: tuple[Segment, ...] = ()
    width: int = WIDTH
    baseline: int = _BASELINE

    @property
    def runtime_time(self) -> str:
        return hms(self.runtime)


def _x(seconds: float, runtime: float) -> float:
    return 0.0 if runtime <= 0 else min(WIDTH, max(0.0, seconds / runtime * WIDTH))


def _ticks(runtime: float) -> tuple[Tick, ...]:
    if runtime <= 0:
        return ()
    step = next((s for s in _TICK_STEPS if runtime / s <= 10), _TICK_STEPS[-1])
    count = int(runtime // step)
    return tuple(Tick(x=_num(_x(n * step, runtime)), label=hms(n * step)) for n in range(count + 1))


def _mark(seconds: float, rank: int, runtime: float) -> Mark:
    height = _RANK_HEIGHTS.get(rank, 20)
    return Mark(
        seconds=seconds,
        rank=rank,
        x=_num(_x(seconds, runtime) - 1.5),
        y=_num(_BASELINE - height),
        height=_num(height),
    )


def adbreaks_timeline(result: AdBreaksResult, item: CatalogItem | None) -> Timeline:
    """Every candidate as a mark, taller for better ranks, over the asset's runtime."""
    every = [(at, tier.rank) for tier in result.ranks for at in tier.candidates]
    runtime, source = asset_runtime(result, item, max((at for at, _ in every), default=None))
    # Weaker ranks first, so rank 1 is drawn on top where marks overlap.
    marks = tuple(_mark(at, rank, runtime) for at, rank in sorted(every, key=lambda m: (-m[1], m[0])))
    return Timeline(runtime=runtime, runtime_source=source, ticks=_ticks(runtime), marks=marks)


def contextual_timeline(result: ContextualAdBreaksResult, item: CatalogItem | None) -> Timeline:
    every = [(b.timestamp, b.rank or 1) for b in result.breaks]
    runtime, source = asset_runtime(result, item, max((at for at, _ in every), default=None))
    marks = tuple(_mark(at, rank, runtime) for at, rank in sorted(every, key=lambda m: (-m[1], m[0])))
    return Timeline(runtime=runtime, runtime_source=source, ticks=_ticks(runtime), marks=marks)


@dataclass(frozen=True, slots=True)
class MarkerLine:
    """One line of the markers list: a name and its times, or "not detected"."""

    label: str
    start: float | None
    end: float | None

    @property
    def detected(self) -> bool:
        return self.start is not None or self.end is not None

    @property
    def start_time(self) -> str:
        return hms(self.start)

    @property
    def end_time(self) -> str:
        return hms(self.end)


def markers_lines(result: MarkersResult) -> tuple[MarkerLine, ...]:
    return (
        MarkerLine("Intro", result.intro_start, result.intro_end),
        MarkerLine("Recap", result.recap_start, result.recap_end),
        MarkerLine("Credits", result.credit_start, None),
    )


def markers_timeline(result: MarkersResult, item: CatalogItem | None) -> Timeline:
    """Intro and recap as segments (a thin one where only one end was detected), credits to the end."""
    times = [t for t in (result.intro_start, result.intro_end, result.recap_start, result.recap_end) if t]
    if result.credit_start is not None:
        times.append(result.credit_start)
    runtime, source = asset_runtime(result, item, max(times, default=None))
    segments = []
    for kind, label, start, end in (
        ("intro", "Intro", result.intro_start, result.intro_end),
        ("recap", "Recap", result.recap_start, result.recap_end),
        ("credits", "Credits", result.credit_start, runtime if result.credit_start is not None else None),
    ):
        known = [t for t in (start, end) if t is not None]
        if not known:
            continue
        first, last = known[0], known[-1]
        left, right = _x(first, runtime), _x(max(first, last), runtime)
        segments.append(
            Segment(
                kind=kind,
                label=label,
                start=first,
                end=None if kind == "credits" else end,
                x=_num(left),
                width=_num(max(3.0, right - left)),
            )
        )
    return Timeline(runtime=runtime, runtime_source=source, ticks=_ticks(runtime), segments=tuple(segments))


# --- contextual breaks ----------------------------------------------------------------------------------

TOP_N = 3


def top(scores: Mapping[str, float], n: int = TOP_N) -> list[tuple[str, float]]:
    """The `n` best labels, best first (ties by label, so the order is stable)."""
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


@dataclass(frozen=True, slots=True)
class ContextRow:
    seconds: float
    rank: int | None
    keywords: list[tuple[str, float]]
    moods: list[tuple[str, float]]
    iab: list[tuple[str, float]]
    iab_version: str | None
    nudity: bool | None
    profanity: bool | None

    @property
    def time(self) -> str:
        return hms(self.seconds)


def contextual_rows(result: ContextualAdBreaksResult) -> list[ContextRow]:
    return [
        ContextRow(
            seconds=b.timestamp,
            rank=b.rank,
            keywords=top(b.keyword),
            moods=top(b.mood_tag),
            iab=top(b.iab_tier),
            iab_version=b.iab_version,
            nudity=b.contains_nudity,
            profanity=b.contains_profanity,
        )
        for b in sorted(result.breaks, key=lambda b: b.timestamp)
    ]


# --- ranks as copyable lists ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RankList:
    rank: int
    times: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.times)

    @property
    def rows(self) -> int:
        return max(2, min(len(self.times), 10))


def rank_lists(result: AdBreaksResult) -> list[RankList]:
    return [RankList(rank=tier.rank, times=[hms(at) for at in tier.candidates]) for tier in result.ranks]


# --- any other product: a collapsible JSON tree ---------------------------------------------------------

#: Bounds of the tree: deeper levels, longer lists and longer strings are cut, with a note saying so.
TREE_MAX_DEPTH = 8
TREE_MAX_CHILDREN = 200
TREE_MAX_NODES = 3000
TREE_MAX_STRING = 500


def json_tree(value: JsonValue) -> SafeString:
    """Nested <details>/<summary> for objects and lists, escaped leaves; bounded in depth and size."""
    budget = [TREE_MAX_NODES]
    return format_html('<div class="json-tree">{}</div>', _node(value, 0, budget, open_=True))


def _leaf(value: JsonValue) -> SafeString:
    if isinstance(value, str):
        shown = value if len(value) <= TREE_MAX_STRING else value[:TREE_MAX_STRING] + "…"
        return format_html('<span class="json-string">"{}"</span>', shown)
    if value is None:
        return format_html('<span class="json-null">{}</span>', "null")
    if isinstance(value, bool):
        return format_html('<span class="json-bool">{}</span>', "true" if value else "false")
    return format_html('<span class="json-number">{}</span>', json.dumps(value))


def _node(value: JsonValue, depth: int, budget: list[int], *, open_: bool = False) -> SafeString:
    budget[0] -= 1
    if not isinstance(value, dict | list):
        return _leaf(value)
    size = len(value)
    noun = ("key" if isinstance(value, dict) else "item") + ("" if size == 1 else "s")
    summary = format_html("{} {} {}", "{…}" if isinstance(value, dict) else "[…]", size, noun)
    if depth >= TREE_MAX_DEPTH or budget[0] <= 0:
        return format_html('<span class="json-cut">{} (not shown: too deep or too large)</span>', summary)
    pairs = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
    shown = pairs[:TREE_MAX_CHILDREN]
    items = []
    for key, child in shown:
        if budget[0] <= 0:
            break
        items.append(
            format_html('<li><span class="json-key">{}</span>: {}</li>', key, _node(child, depth + 1, budget))
        )
    more = size - len(items)
    tail = format_html('<li class="muted">… {} more not shown</li>', more) if more > 0 else ""
    return format_html(
        "<details{}><summary>{}</summary><ul>{}{}</ul></details>",
        " open" if open_ else "",
        summary,
        format_html_join("", "{}", ((item,) for item in items)),
        tail,
    )


# --- the fragment's context -----------------------------------------------------------------------------


def present(view: TaskResultView) -> dict[str, Any]:
    """What the fragment draws for `view`'s kind of result."""
    result, item = view.result, view.task.item
    if isinstance(result, AdBreaksResult):
        return {"timeline": adbreaks_timeline(result, item), "rank_lists": rank_lists(result)}
    if isinstance(result, ContextualAdBreaksResult):
        return {"timeline": contextual_timeline(result, item), "context_rows": contextual_rows(result)}
    if isinstance(result, MarkersResult):
        return {"timeline": markers_timeline(result, item), "marker_lines": markers_lines(result)}
    if isinstance(result, GenericResult):
        return {"tree": json_tree(result.data)}
    return {}
