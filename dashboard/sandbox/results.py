"""Made-up but plausible results for the sandbox's done tasks: the same inventory id always gets the same ones.

Everything is drawn from a `random.Random` seeded by a SHA-256 of the inventory id (never from shared random
state), so a result is stable across requests, restarts and machines. The shapes follow the vendor's
references (see docs/results.md); the numbers only need to look like an asset: a runtime of 20-150 minutes,
ad-break candidates at scene changes ranked by quality, intro/recap/credits where episodes have them.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass
from typing import Any

FPS = 25
_MOODS = (
    "suspenseful",
    "amusing",
    "romantic",
    "dark",
    "uplifting",
    "tense",
    "calm",
    "melancholic",
    "exciting",
)
_KEYWORDS = (
    "car chase", "kitchen", "wedding", "courtroom", "beach", "hospital", "office", "forest", "city at night",
    "family dinner", "police", "football", "rain", "airport", "school", "concert", "house", "boat",
)  # fmt: skip
_IAB = (  # (IAB 3.0 category, its unique id)
    ("Automotive", "1"), ("Food & Drink", "210"), ("Family and Relationships", "186"), ("Law", "383"),
    ("Travel", "653"), ("Healthy Living", "223"), ("Business and Finance", "52"), ("Sports", "483"),
    ("Music and Audio", "338"), ("Home & Garden", "274"), ("Education", "132"), ("Pets", "422"),
)  # fmt: skip


def rng_for(inventory_id: str, purpose: str) -> random.Random:
    """A generator that depends only on the inventory id (and what it is drawn for)."""
    digest = hashlib.sha256(f"{purpose}\0{inventory_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def runtime_seconds(inventory_id: str) -> float:
    """The asset's made-up runtime: 20 to 150 minutes."""
    return round(rng_for(inventory_id, "runtime").uniform(20 * 60, 150 * 60), 2)


@dataclass(frozen=True, slots=True)
class Separation:
    """The minute parameters of the ad-break endpoints (the vendor's v3 defaults)."""

    minimum: float = 1.0
    maximum: float = 5.0
    skip_first: float = 1.0
    skip_last: float = 1.0


def _scene_changes(inventory_id: str, runtime: float) -> list[tuple[float, float]]:
    """(time, quality) of every scene change: one every 20-90 s, quality 0-1."""
    rng = rng_for(inventory_id, "scenes")
    points, at = [], rng.uniform(5, 40)
    while at < runtime - 5:
        points.append((round(at, 2), rng.random()))
        at += rng.uniform(20, 90)
    return points


def adbreak_ranks(inventory_id: str, separation: Separation) -> list[dict[str, Any]]:
    """Rank 1: a few of the best scene changes; ranks 2 and 3: more, weaker ones. Within a rank, candidates are
    at least `minimum` minutes apart; where all ranks together leave a gap wider than `maximum` minutes, the
    best scene change inside it joins the last rank."""
    runtime = runtime_seconds(inventory_id)
    low, high = separation.skip_first * 60, runtime - separation.skip_last * 60
    points = [(at, quality) for at, quality in _scene_changes(inventory_id, runtime) if low <= at <= high]
    best_first = sorted(points, key=lambda point: -point[1])
    few = max(2, int(runtime // (15 * 60)))
    tiers = [best_first[:few], best_first[few : 3 * few], best_first[3 * few : 6 * few]]
    gap = separation.minimum * 60
    chosen: list[list[float]] = []
    for tier in tiers:
        kept: list[float] = []
        for at, _ in tier:  # best first: a weaker candidate too close to a better one goes
            if all(abs(at - other) >= gap for other in kept):
                kept.append(at)
        chosen.append(kept)
    everything = sorted(at for kept in chosen for at in kept)
    filled = _fill_gaps(everything, points, gap, separation.maximum * 60, low, high)
    chosen[-1].extend(sorted(set(filled) - set(everything)))
    return [{"rank": rank, "candidates": sorted(kept)} for rank, kept in enumerate(chosen, start=1) if kept]


def _fill_gaps(
    kept: list[float], points: list[tuple[float, float]], gap: float, widest: float, low: float, high: float
) -> list[float]:
    """Add the best scene change inside each gap wider than `widest` (roughly: at most 100 additions)."""
    kept = sorted(kept)
    for _ in range(100):
        edges = [low, *kept, high]
        wide = next(((a, b) for a, b in itertools.pairwise(edges) if b - a > widest), None)
        if wide is None:
            break
        inside = [p for p in points if wide[0] + gap <= p[0] <= wide[1] - gap and p[0] not in kept]
        if not inside:
            break
        kept = sorted([*kept, max(inside, key=lambda point: point[1])[0]])
    return kept


def adbreaks_v3(
    inventory_id: str, version: str, separation: Separation, updated: str, *, frames: bool
) -> dict:
    """The v3 envelope with ranked candidates in seconds (or frame numbers at 25 fps)."""
    ranks = adbreak_ranks(inventory_id, separation)
    if frames:
        ranks = [{**tier, "candidates": [round(at * FPS) for at in tier["candidates"]]} for tier in ranks]
    data = {
        "adbreak": ranks,
        "inventory_id": inventory_id,
        "type": "movie",
        "version_id": version,
        "vionlabs_id": vionlabs_id(inventory_id),
    }
    return _envelope(inventory_id, version, updated, data)


def contextual_adbreaks(inventory_id: str, version: str, separation: Separation, updated: str) -> dict:
    """The v2 envelope: the rank 1 and 2 breaks, each with a few keywords, moods and IAB 3.0 tiers."""
    rng = rng_for(inventory_id, "context")
    breaks = []
    for tier in adbreak_ranks(inventory_id, separation)[:2]:
        for at in tier["candidates"]:
            iab = rng.sample(_IAB, rng.randint(1, 3))
            iab_scores = [round(rng.uniform(0.3, 0.9), 4) for _ in iab]
            breaks.append(
                {
                    "timestamp": at,
                    "frame_number": round(at * FPS),
                    "rank": tier["rank"],
                    "contains_nudity": rng.random() < 0.1,
                    "contains_profanity": rng.random() < 0.2,
                    "keyword": {word: round(rng.uniform(0.4, 0.95), 4) for word in rng.sample(_KEYWORDS, 3)},
                    "mood_tag": {mood: round(rng.uniform(0.4, 0.95), 4) for mood in rng.sample(_MOODS, 2)},
                    "iab_version": "3.0",
                    "iab_tier": {name: score for (name, _), score in zip(iab, iab_scores, strict=True)},
                    "iab_uid": {uid: score for (_, uid), score in zip(iab, iab_scores, strict=True)},
                    "iab_all_versions": {
                        "3.0": {
                            "iab_tier": {
                                name: score for (name, _), score in zip(iab, iab_scores, strict=True)
                            },
                            "iab_uid": {uid: score for (_, uid), score in zip(iab, iab_scores, strict=True)},
                        }
                    },
                }
            )
    breaks.sort(key=lambda entry: entry["timestamp"])
    data = {
        "inventory_id": inventory_id,
        "type": "movie",
        "vionlabs_id": vionlabs_id(inventory_id),
        "version_id": version,
        "context_adbreak": breaks,
    }
    return _envelope(inventory_id, version, updated, data)


def markers(inventory_id: str) -> dict[str, Any]:
    """Intro (missing for about 1 id in 5), recap (about half) and credits (missing for about 1 in 10)."""
    rng = rng_for(inventory_id, "markers")
    runtime = runtime_seconds(inventory_id)
    answer: dict[str, Any] = {"ident": inventory_id, "not_yet_available": False}
    has_intro, has_recap, has_credits = rng.random() >= 0.2, rng.random() < 0.5, rng.random() >= 0.1
    at = round(rng.uniform(0, 120), 1)
    if has_intro:
        answer["intro_start"] = at
        at = answer["intro_end"] = round(at + rng.uniform(30, 90), 1)
    if has_recap:
        answer["recap_start"] = at
        answer["recap_end"] = round(at + rng.uniform(20, 120), 1)
    if has_credits:
        answer["credit_start"] = round(runtime - rng.uniform(60, 400), 1)
    return answer


def generic(inventory_id: str, product: str, version: str, updated: str) -> dict[str, Any]:
    """Plain JSON for products whose answer shape is not known: the envelope and a few scored moments."""
    rng = rng_for(inventory_id, product)
    runtime = runtime_seconds(inventory_id)
    moments = sorted(round(rng.uniform(0, runtime), 2) for _ in range(rng.randint(3, 6)))
    data = {
        "inventory_id": inventory_id,
        "product": product,
        "version_id": version,
        "runtime": runtime,
        "items": [
            {"timestamp": at, "frame_number": round(at * FPS), "score": round(rng.random(), 4)}
            for at in moments
        ],
    }
    return _envelope(inventory_id, version, updated, data)


def vionlabs_id(inventory_id: str) -> str:
    return hashlib.sha256(f"vionlabs\0{inventory_id}".encode()).hexdigest()[:16]


def _envelope(inventory_id: str, version: str, updated: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": "success",
        "error": None,
        "updated": updated,
        "version_id": version,
        "inventory_id": inventory_id,
        "type": "movie",
        "data": data,
    }
