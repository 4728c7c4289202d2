"""The answers of the Vionlabs Results APIs, as frozen dataclasses, and the parsers that build them.

No HTTP here: `VionlabsClient.get_adbreaks()` and friends fetch, these functions read. The vendor has not
published every field of every answer, so parsing is lenient where it can be and strict only where a value
is needed to show the result at all (a rank's candidates must be numbers; a break needs its timestamp):
- a field this module does not know is kept in `extra` (envelope fields by name, fields of the envelope's
  `data` object as `data.<name>`), and the whole answer is kept in `raw`, so nothing is ever dropped;
- a known field of an unexpected type is moved to `extra` rather than refused;
- a well-formed "nothing yet" answer (`not_yet_available: true`, or an envelope without `data`) raises
  `NotYetAvailable`, which the client turns into `VionlabsNoResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from .errors import NotYetAvailable, ShapeError

type JsonValue = bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None
type JsonObject = dict[str, JsonValue]

#: Where each product's result lives. `{inventory_id}` (or `{ident}` for markers) is the only placeholder.
#: Ad breaks, contextual ad breaks and markers are the documented paths; for the other products the
#: vendor's references were not available when this was written, so `/results/<product>/v1/{inventory_id}`
#: is an assumption: override it per product with `VionlabsClient(result_paths={...})`.
ADBREAKS_PATH = "/results/adbreaks/v3/filter/millisec/{inventory_id}"
CONTEXTUAL_ADBREAK_PATH = "/results/contextual_adbreak/v2/{inventory_id}"
MARKERS_PATH = "/results/markers/v1/asset/{ident}"
GENERIC_RESULT_PATH = "/results/{product}/v1/{{inventory_id}}"
DEFAULT_RESULT_PATHS: Mapping[str, str] = {
    "adbreaks": ADBREAKS_PATH,
    "contextual_adbreak": CONTEXTUAL_ADBREAK_PATH,
    "markers": MARKERS_PATH,
}


@dataclass(frozen=True, slots=True)
class AdBreakRank:
    """One tier of ad-break candidates: rank 1 is the best; candidates are seconds from the start."""

    rank: int
    candidates: tuple[float, ...]
    extra: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AdBreaksResult:
    """`GET /results/adbreaks/v3/filter/millisec/{inventory_id}`: ranked break candidates in seconds."""

    inventory_id: str
    status: str | None
    error: str | None
    updated: datetime | None
    version_id: str | None
    type: str | None
    vionlabs_id: str | None
    ranks: tuple[AdBreakRank, ...]
    extra: Mapping[str, JsonValue] = field(default_factory=dict)
    raw: Mapping[str, JsonValue] = field(default_factory=dict, repr=False)

    def candidates(self, rank: int) -> tuple[float, ...]:
        """The candidates of one rank (empty when the rank is absent)."""
        return next((tier.candidates for tier in self.ranks if tier.rank == rank), ())


@dataclass(frozen=True, slots=True)
class ContextualBreak:
    """One contextual ad break: where, how good, and what surrounds it (scores are 0-1 as given)."""

    timestamp: float
    frame_number: int | None
    rank: int | None
    contains_nudity: bool | None
    contains_profanity: bool | None
    keyword: Mapping[str, float]
    mood_tag: Mapping[str, float]
    iab_version: str | None
    iab_tier: Mapping[str, float]
    iab_uid: Mapping[str, float]
    iab_all_versions: Mapping[str, JsonValue] = field(default_factory=dict)
    extra: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContextualAdBreaksResult:
    """`GET /results/contextual_adbreak/v2/{inventory_id}`: breaks with their context, in answer order."""

    inventory_id: str
    status: str | None
    error: str | None
    updated: datetime | None
    version_id: str | None
    type: str | None
    vionlabs_id: str | None
    breaks: tuple[ContextualBreak, ...]
    extra: Mapping[str, JsonValue] = field(default_factory=dict)
    raw: Mapping[str, JsonValue] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class MarkersResult:
    """`GET /results/markers/v1/asset/{ident}`: seconds from the start; None where nothing was detected."""

    ident: str
    intro_start: float | None
    intro_end: float | None
    recap_start: float | None
    recap_end: float | None
    credit_start: float | None
    extra: Mapping[str, JsonValue] = field(default_factory=dict)
    raw: Mapping[str, JsonValue] = field(default_factory=dict, repr=False)

    @property
    def intro(self) -> tuple[float, float] | None:
        """(start, end) of the intro when both ends were detected."""
        return _segment(self.intro_start, self.intro_end)

    @property
    def recap(self) -> tuple[float, float] | None:
        """(start, end) of the recap when both ends were detected."""
        return _segment(self.recap_start, self.recap_end)


@dataclass(frozen=True, slots=True)
class GenericResult:
    """Any other product's answer, kept as the JSON it was (shown as a tree; the shape is not known)."""

    product: str
    inventory_id: str
    data: JsonValue


def _segment(start: float | None, end: float | None) -> tuple[float, float] | None:
    return (start, end) if start is not None and end is not None else None


def _number(value: JsonValue) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _whole(value: JsonValue) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _string(value: JsonValue) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # ids and versions may come as numbers
    return None


def _datetime(value: JsonValue) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _scores(value: JsonValue) -> dict[str, float] | None:
    """A {label: score} object; None when it is not one (the caller keeps the value in `extra`)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        return None
    scores = {}
    for label, score in value.items():
        number = _number(score)
        if number is None:
            return None
        scores[label] = number
    return scores


type _Converter[T] = Callable[[JsonValue], T | None]


class _Fields:
    """Reads known fields off one JSON object and remembers which it used, so the rest lands in `extra`."""

    def __init__(self, data: JsonObject, prefix: str = "") -> None:
        self._data = data
        self._prefix = prefix
        self._used: set[str] = set()
        self.misfits: dict[str, JsonValue] = {}

    def get(self, name: str) -> JsonValue:
        self._used.add(name)
        return self._data.get(name)

    def typed[T](self, name: str, convert: _Converter[T]) -> T | None:
        """The field converted, or None; a present value that does not convert is kept in `extra`."""
        value = self.get(name)
        converted = convert(value)
        if converted is None and value is not None:
            self.misfits[self._prefix + name] = value
        return converted

    def extra(self) -> dict[str, JsonValue]:
        rest = {self._prefix + name: value for name, value in self._data.items() if name not in self._used}
        return {**rest, **self.misfits}


def _object(data: object, what: str) -> JsonObject:
    if not isinstance(data, dict):
        raise ShapeError(f"{what} is not an object")
    return cast(JsonObject, data)


def _envelope(data: object, product: str) -> tuple[_Fields, _Fields]:
    """The v3/v2 result envelope `{status, error, updated, version_id, inventory_id, type, data: {...}}`."""
    outer = _Fields(_object(data, "the answer"))
    inner_value = outer.get("data")
    if inner_value is None:
        status = _string(outer.get("status")) or "no status"
        error = _string(outer.get("error"))
        reason = f"the {product} answer has no data (status {status!r}" + (
            f", error {error!r})" if error else ")"
        )
        raise NotYetAvailable(reason)
    return outer, _Fields(_object(inner_value, "'data'"), prefix="data.")


@dataclass(frozen=True, slots=True)
class _Common:
    """The fields every enveloped result has."""

    inventory_id: str | None
    status: str | None
    error: str | None
    updated: datetime | None
    version_id: str | None
    type: str | None
    vionlabs_id: str | None


def _common(outer: _Fields, inner: _Fields) -> _Common:
    """Fields the envelope and its `data` share; `data`'s value wins when both carry one."""

    def either(name: str) -> str | None:
        inside, outside = inner.typed(name, _string), outer.typed(name, _string)
        return inside if inside is not None else outside

    return _Common(
        inventory_id=either("inventory_id"),
        status=outer.typed("status", _string),
        error=outer.typed("error", _string),
        updated=outer.typed("updated", _datetime),
        version_id=either("version_id"),
        type=either("type"),
        vionlabs_id=either("vionlabs_id"),
    )


def parse_adbreaks(data: object, *, inventory_id: str) -> AdBreaksResult:
    """An ad breaks v3 answer; also reads v2's bare `{"adbreak": [...]}` (no envelope)."""
    answer = _object(data, "the answer")
    if "data" not in answer and isinstance(answer.get("adbreak"), list):
        outer, inner = _Fields({}), _Fields(answer)  # v2: the fields sit at the top
    else:
        outer, inner = _envelope(answer, "adbreaks")
    common = _common(outer, inner)
    tiers = inner.get("adbreak")
    if tiers is None:
        tiers = []
    if not isinstance(tiers, list):
        raise ShapeError("'adbreak' is not a list")
    ranks = []
    for position, tier in enumerate(tiers, start=1):
        fields = _Fields(_object(tier, "an 'adbreak' entry"))
        rank = fields.typed("rank", _whole)
        candidates = fields.get("candidates")
        if candidates is None:
            candidates = []
        if not isinstance(candidates, list):
            raise ShapeError(f"the candidates of rank {rank or position} are not a list")
        times = [_number(value) for value in candidates]
        if any(time is None for time in times):
            raise ShapeError(f"a candidate of rank {rank or position} is not a number")
        ranks.append(
            AdBreakRank(
                rank=rank if rank is not None else position,
                candidates=tuple(sorted(cast(list[float], times))),
                extra=fields.extra(),
            )
        )
    return AdBreaksResult(
        inventory_id=common.inventory_id or inventory_id,
        status=common.status,
        error=common.error,
        updated=common.updated,
        version_id=common.version_id,
        type=common.type,
        vionlabs_id=common.vionlabs_id,
        ranks=tuple(sorted(ranks, key=lambda tier: tier.rank)),
        extra={**outer.extra(), **inner.extra()},
        raw=answer,
    )


def _contextual_break(entry: object) -> ContextualBreak:
    fields = _Fields(_object(entry, "a 'context_adbreak' entry"))
    timestamp = fields.typed("timestamp", _number)
    if timestamp is None:
        raise ShapeError("a contextual break has no numeric 'timestamp'")
    all_versions = fields.get("iab_all_versions")
    if all_versions is not None and not isinstance(all_versions, dict):
        fields.misfits["iab_all_versions"] = all_versions
        all_versions = None
    return ContextualBreak(
        timestamp=timestamp,
        frame_number=fields.typed("frame_number", _whole),
        rank=fields.typed("rank", _whole),
        contains_nudity=fields.typed("contains_nudity", _flag),
        contains_profanity=fields.typed("contains_profanity", _flag),
        keyword=fields.typed("keyword", _scores) or {},
        mood_tag=fields.typed("mood_tag", _scores) or {},
        iab_version=fields.typed("iab_version", _string),
        iab_tier=fields.typed("iab_tier", _scores) or {},
        iab_uid=fields.typed("iab_uid", _scores) or {},
        iab_all_versions=all_versions or {},
        extra=fields.extra(),
    )


def _flag(value: JsonValue) -> bool | None:
    return value if isinstance(value, bool) else None


def parse_contextual_adbreaks(data: object, *, inventory_id: str) -> ContextualAdBreaksResult:
    """A contextual ad breaks v2 answer; also reads v1's bare `{"context_adbreak": [...]}`."""
    answer = _object(data, "the answer")
    if "data" not in answer and isinstance(answer.get("context_adbreak"), list):
        outer, inner = _Fields({}), _Fields(answer)
    else:
        outer, inner = _envelope(answer, "contextual_adbreak")
    common = _common(outer, inner)
    entries = inner.get("context_adbreak")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ShapeError("'context_adbreak' is not a list")
    return ContextualAdBreaksResult(
        inventory_id=common.inventory_id or inventory_id,
        status=common.status,
        error=common.error,
        updated=common.updated,
        version_id=common.version_id,
        type=common.type,
        vionlabs_id=common.vionlabs_id,
        breaks=tuple(_contextual_break(entry) for entry in entries),
        extra={**outer.extra(), **inner.extra()},
        raw=answer,
    )


_MARKER_FIELDS = frozenset(
    {"ident", "not_yet_available", "intro_start", "intro_end", "recap_start", "recap_end", "credit_start"}
)


def parse_markers(data: object, *, ident: str) -> MarkersResult:
    """A markers answer; `not_yet_available: true` raises NotYetAvailable."""
    answer = _object(data, "the answer")
    if not _MARKER_FIELDS & answer.keys():
        raise ShapeError("the answer has none of the markers fields")
    fields = _Fields(answer)
    if fields.get("not_yet_available") is True:
        raise NotYetAvailable("the item is in the Vionlabs catalog but its markers are not processed yet")
    return MarkersResult(
        ident=fields.typed("ident", _string) or ident,
        intro_start=fields.typed("intro_start", _number),
        intro_end=fields.typed("intro_end", _number),
        recap_start=fields.typed("recap_start", _number),
        recap_end=fields.typed("recap_end", _number),
        credit_start=fields.typed("credit_start", _number),
        extra=fields.extra(),
        raw=answer,
    )


def parse_generic(data: object, *, product: str, inventory_id: str) -> GenericResult:
    """Any JSON answer, kept whole; an object with `not_yet_available: true` raises NotYetAvailable."""
    if isinstance(data, dict) and data.get("not_yet_available") is True:
        raise NotYetAvailable(f"the item's {product} result is not available yet")
    return GenericResult(product=product, inventory_id=inventory_id, data=cast(JsonValue, data))
