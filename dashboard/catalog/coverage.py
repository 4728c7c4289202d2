"""What the overview's coverage shows for each product: tasks at its default version by status, and the items
it applies to that have none ("not requested"), from the trigger-kept counts (no scan of the task table)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .counts import Counts
from .models import ProductSetting, TaskStatus

#: Width of the stacked bar in SVG user units; segments are whole units so they always add up to it.
BAR_UNITS = 1000


@dataclass(frozen=True)
class Segment:
    key: str  # CSS modifier: done, in-flight, failed, other, missing
    label: str
    count: int
    x: int = 0
    width: int = 0

    def percent(self, total: int) -> int:
        return round(100 * self.count / total) if total else 0


@dataclass
class ProductCoverage:
    setting: ProductSetting
    #: Tasks at the default version on items the product applies to, by status.
    by_status: dict[str, int] = field(default_factory=dict)
    #: Items the product applies to.
    applicable: int = 0
    #: Tasks at the default version on items of kinds the product no longer applies to (not counted above).
    elsewhere: int = 0

    @property
    def requested(self) -> int:
        return sum(self.by_status.values())

    @property
    def not_requested(self) -> int:
        return max(0, self.applicable - self.requested)

    @property
    def total(self) -> int:
        return self.requested + self.not_requested

    @property
    def segments(self) -> list[Segment]:
        """done / in flight / failed / other (deactivated, statuses we do not know) / not requested, each
        with its place on the bar. "In flight" includes tasks Vionlabs has not answered for yet."""
        done = self.by_status.get(TaskStatus.DONE, 0)
        in_flight = sum(n for s, n in self.by_status.items() if s in TaskStatus.IN_FLIGHT or s == "")
        failed = self.by_status.get(TaskStatus.FAILED, 0)
        other = self.requested - done - in_flight - failed
        parts = [
            ("done", "done", done),
            ("in-flight", "in flight", in_flight),
            ("failed", "failed", failed),
            ("other", "deactivated or other", other),
            ("missing", "not requested", self.not_requested),
        ]
        total = self.total
        segments, x, consumed = [], 0, 0
        for key, label, count in parts:
            if not count:
                continue
            consumed += count
            # Cumulative rounding: the segments always end exactly at BAR_UNITS.
            end = round(BAR_UNITS * consumed / total)
            segments.append(Segment(key=key, label=label, count=count, x=x, width=end - x))
            x = end
        return segments

    @property
    def summary(self) -> str:
        """The bar in words (its accessible name)."""
        total = self.total
        if not total:
            return f"{self.setting}: no items it applies to"
        parts = [f"{s.count} {s.label} ({s.percent(total)}%)" for s in self.segments]
        return f"{self.setting}: " + ", ".join(parts)


def product_coverage(products: list[ProductSetting], counts: Counts) -> list[ProductCoverage]:
    """One ProductCoverage per product, following each product's `applies_to`."""
    result = []
    for setting in products:
        kinds = list(setting.applies_to)
        coverage = ProductCoverage(setting=setting, applicable=counts.items_of(kinds))
        coverage.by_status = counts.tasks_for(setting.product, setting.default_version, kinds)
        others = [kind for kind in {k for (_, _, _, k) in counts.tasks} if kind not in kinds]
        coverage.elsewhere = sum(counts.tasks_for(setting.product, setting.default_version, others).values())
        result.append(coverage)
    return result
