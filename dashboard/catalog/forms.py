"""Forms of the operations UI. `CatalogFilterForm` is the one place the catalog filters live: the catalog page
and the bulk operations ("all N matching this filter") both call `filter_items`, so they cannot disagree."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import QueryDict
from django.utils import timezone

from dashboard.vionlabs import STATUS_MAX_LENGTH

from .models import (
    DEFAULT_APPLIES_TO,
    CatalogItem,
    ItemKind,
    PriorityChoices,
    ProductChoices,
    ProductSetting,
    ProductTask,
    TaskStatus,
)
from .pagination import MAX_ID, decode_cursor
from .querysets import CatalogItemQuerySet, ProductTaskQuerySet
from .results import ResultParams
from .validators import INVENTORY_ID_MAX_LENGTH, VERSION_MAX_LENGTH, validate_storable_text

#: The status filter's value for tasks Vionlabs has not answered for yet (stored as an empty status).
UNANSWERED = "unanswered"
#: Items that are only containers of episodes: no video of their own, so never "missing" a product.
CONTAINER_KINDS = (ItemKind.SERIES, ItemKind.SEASON)

ITEM_SORTS = {
    "inventory_id": "Inventory id (A to Z)",
    "-inventory_id": "Inventory id (Z to A)",
    "title": "Title (A to Z)",
    "-title": "Title (Z to A)",
}


class CursorFieldsMixin(forms.Form):
    after = forms.CharField(required=False, widget=forms.HiddenInput, max_length=2000)
    before = forms.CharField(required=False, widget=forms.HiddenInput, max_length=2000)

    #: The type of the sort key the list's cursors carry (the task list sorts by id).
    cursor_value_type: type[int] | type[str] = str

    def clean_after(self) -> list[Any] | None:
        value = self.cleaned_data.get("after")
        return decode_cursor(value, value_type=self.cursor_value_type) if value else None

    def clean_before(self) -> list[Any] | None:
        value = self.cleaned_data.get("before")
        return decode_cursor(value, value_type=self.cursor_value_type) if value else None


def parse_id(text: str) -> int | None:
    """A row id from a request parameter, or None: ASCII digits only (`str.isdigit()` also takes "²", which
    `int()` refuses) and within bigint, so a 5,000-digit id never reaches int() or the database."""
    text = text.strip()
    if not text or len(text) > len(str(MAX_ID)) or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 0 < value <= MAX_ID else None


def parse_ids(text: str, *, limit: int) -> list[int]:
    """The ids of a comma-separated list (at most `limit` of them); anything that is not an id is skipped."""
    return [pk for part in text.split(",")[:limit] if (pk := parse_id(part)) is not None]


#: How deep the catalog indents a row (series, season, episode and one more for safety).
ROW_MAX_DEPTH = 3


def parse_depth(text: str) -> int:
    """A row's nesting depth from a request parameter: 0 unless it is plain ASCII digits, at most
    ROW_MAX_DEPTH."""
    text = text.strip()
    if not text or len(text) > 4 or not (text.isascii() and text.isdigit()):
        return 0
    return min(int(text), ROW_MAX_DEPTH)


def product_choices(blank: str) -> list[tuple[str, str]]:
    return [("", blank), *ProductChoices.choices]


class CatalogFilterForm(CursorFieldsMixin, forms.Form):
    q = forms.CharField(
        label="Search", required=False, max_length=200, help_text="Inventory id or title contains"
    )
    product = forms.ChoiceField(label="Product", required=False, choices=product_choices("Any product"))
    status = forms.CharField(
        label="Status",
        required=False,
        max_length=32,
        help_text="Of the product's task; any value Vionlabs uses, or 'unanswered'",
    )
    version = forms.CharField(label="Version", required=False, max_length=VERSION_MAX_LENGTH)
    kind = forms.ChoiceField(label="Kind", required=False, choices=[("", "Any kind"), *ItemKind.choices])
    missing = forms.ChoiceField(
        label="Missing product",
        required=False,
        choices=product_choices("—"),
        help_text="No task at its version",
    )
    failures = forms.BooleanField(label="Has failures", required=False)
    sort = forms.ChoiceField(label="Sort", required=False, choices=list(ITEM_SORTS.items()))

    #: The fields that select items (the rest, sort and cursors, only arrange them).
    FILTER_FIELDS = ("q", "product", "status", "version", "kind", "missing", "failures")

    def clean_sort(self) -> str:
        return self.cleaned_data.get("sort") or "inventory_id"

    def clean_status(self) -> str:
        return self.cleaned_data.get("status", "").strip()

    def clean_version(self) -> str:
        return self.cleaned_data.get("version", "").strip()

    def filter_items(
        self, qs: CatalogItemQuerySet, *, settings: Iterable[ProductSetting] | None = None
    ) -> CatalogItemQuerySet:
        """The items matching the filter. Raises ValueError on an invalid filter: acting on a partial filter
        would touch items the operator did not choose."""
        if not self.is_valid():
            raise ValueError(f"Invalid catalog filter: {self.errors.as_text()}")
        data = self.cleaned_data
        qs = qs.search(data["q"])
        if data["kind"]:
            qs = qs.filter(kind=data["kind"])
        task_q = self._task_q()
        if task_q:
            qs = qs.filter(Exists(ProductTask.objects.filter(task_q, item=OuterRef("pk"))))
        if data["missing"]:
            if settings is None:
                settings = ProductSetting.objects.filter(product=data["missing"])
            setting = next((s for s in settings if s.product == data["missing"]), None)
            version = data["version"] or (setting.default_version if setting else "")
            has_task = ProductTask.objects.filter(item=OuterRef("pk"), product=data["missing"])
            if version:
                has_task = has_task.filter(version=version)
            # Only items the product applies to can miss it (the same rule as the overview's "not requested").
            applicable = qs.applicable_to(setting) if setting else qs.filter(kind__in=DEFAULT_APPLIES_TO)
            qs = applicable.filter(~Exists(has_task))
        if data["failures"]:
            qs = qs.filter(Exists(ProductTask.objects.filter(item=OuterRef("pk"), status=TaskStatus.FAILED)))
        return qs

    def _task_q(self) -> Q:
        """The conditions on an item's task (product, status, version); empty when none is set."""
        data = self.cleaned_data
        task_q = Q()
        if data["product"]:
            task_q &= Q(product=data["product"])
        if data["status"]:
            task_q &= Q(status="" if data["status"] == UNANSWERED else data["status"])
        if data["version"]:
            task_q &= Q(version=data["version"])
        return task_q

    def countable(self, items: QuerySet[CatalogItem]) -> QuerySet:
        """Rows as many as the items `filter_items` returned (`items`), cheaper to count when the filter is only
        about tasks: the matching tasks' distinct item ids, read from (product, status, item) or (status, item)
        alone, without walking the catalog to find which items have one."""
        data = self.cleaned_data
        if data["q"] or data["kind"] or data["missing"]:
            return items
        task_q = self._task_q()
        if task_q and not data["failures"]:
            return ProductTask.objects.filter(task_q).values("item_id").distinct().order_by()
        if data["failures"] and not task_q:
            failed = ProductTask.objects.filter(status=TaskStatus.FAILED)
            return failed.values("item_id").distinct().order_by()
        return items

    def filter_query(self) -> str:
        """The filter part of the query string (no sort, no cursor), for links and bulk operations."""
        query = QueryDict(mutable=True)
        for name in self.FILTER_FIELDS:
            value = self.data.get(name)
            if value:
                query[name] = value
        return query.urlencode()

    @property
    def is_filtered(self) -> bool:
        return any(self.data.get(name) for name in self.FILTER_FIELDS)


TASK_AGES = {
    "": "Any age",
    "1h": "In this status > 1 hour",
    "6h": "In this status > 6 hours",
    "24h": "In this status > 1 day",
    "7d": "In this status > 7 days",
}
AGE_DELTAS = {
    "1h": dt.timedelta(hours=1),
    "6h": dt.timedelta(hours=6),
    "24h": dt.timedelta(days=1),
    "7d": dt.timedelta(days=7),
}


class TaskFilterForm(CursorFieldsMixin, forms.Form):
    status = forms.CharField(label="Status", required=False, max_length=STATUS_MAX_LENGTH)
    product = forms.ChoiceField(label="Product", required=False, choices=product_choices("Any product"))
    version = forms.CharField(label="Version", required=False, max_length=VERSION_MAX_LENGTH)
    priority = forms.ChoiceField(
        label="Priority", required=False, choices=[("", "Any priority"), *PriorityChoices.choices]
    )
    age = forms.ChoiceField(label="Age", required=False, choices=list(TASK_AGES.items()))
    error = forms.CharField(label="Error contains", required=False, max_length=200)
    stuck = forms.BooleanField(label="Stuck only", required=False)

    FILTER_FIELDS = ("status", "product", "version", "priority", "age", "error", "stuck")
    cursor_value_type = int

    def clean_status(self) -> str:
        return self.cleaned_data.get("status", "").strip()

    def filter_tasks(self, qs: ProductTaskQuerySet) -> ProductTaskQuerySet:
        """The tasks matching the filter (the `stuck` flag is applied by the caller, who has the thresholds).
        Raises ValueError on an invalid filter."""
        if not self.is_valid():
            raise ValueError(f"Invalid task filter: {self.errors.as_text()}")
        data = self.cleaned_data
        if data["status"]:
            qs = qs.filter(status="" if data["status"] == UNANSWERED else data["status"])
        if data["product"]:
            qs = qs.filter(product=data["product"])
        if data["version"].strip():
            qs = qs.filter(version=data["version"].strip())
        if data["priority"]:
            qs = qs.filter(priority=data["priority"])
        if data["age"]:
            cutoff = timezone.now() - AGE_DELTAS[data["age"]]
            qs = qs.filter(
                Q(status_changed_at__lt=cutoff) | Q(status_changed_at__isnull=True, created_at__lt=cutoff)
            )
        if data["error"].strip():
            qs = qs.filter(error__icontains=data["error"].strip())
        return qs


class TaskCreateForm(forms.Form):
    product = forms.ChoiceField(label="Product")
    # Not required: a blank version is passed on, and Vionlabs' own answer (422) is shown to the operator.
    version = forms.CharField(label="Version", required=False, max_length=VERSION_MAX_LENGTH, strip=True)
    priority = forms.ChoiceField(label="Priority", choices=PriorityChoices.choices)

    def __init__(self, *args: Any, settings: list[ProductSetting], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.product_settings = {s.product: s for s in settings}
        product_field = self.fields["product"]
        assert isinstance(product_field, forms.ChoiceField)
        product_field.choices = [(s.product, s.get_product_display()) for s in settings]
        if not self.is_bound and settings:
            chosen = self.product_settings.get(self.initial.get("product", ""), settings[0])
            self.initial.setdefault("product", chosen.product)
            self.initial.setdefault("version", chosen.default_version)
            self.initial.setdefault("priority", chosen.default_priority)


class ProductSettingForm(forms.ModelForm):
    """The admin's form for a product: which kinds of item it applies to, as checkboxes."""

    applies_to = forms.MultipleChoiceField(
        choices=ItemKind.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text=(
            "Kinds of item this product is requested for. Standalone items and episodes carry video; "
            "choose series or seasons only when Vionlabs processes this product at that level. A bulk "
            "operation on a series or season the product does not apply to covers its episodes instead."
        ),
    )

    class Meta:
        model = ProductSetting
        fields = [
            "product", "enabled", "default_version", "default_priority", "position", "stuck_after", "applies_to",
        ]  # fmt: skip

    def clean_applies_to(self) -> list[str]:
        chosen = set(self.cleaned_data["applies_to"])
        # Kept in ItemKind's order, so the stored list reads the same whatever order the boxes were ticked.
        return [kind for kind in ItemKind.values if kind in chosen]


class OperationChoicesForm(forms.Form):
    """What a bulk operation would do: kind, product, version, priority, as the catalog's bulk form and the
    preview post them. Only parsed here; `operations` judges them (the same rules as the admin's actions).
    A blank version or priority takes the product's defaults."""

    kind = forms.CharField(required=False)
    product = forms.CharField(required=False)
    version = forms.CharField(required=False)
    priority = forms.CharField(required=False)

    def _text(self, name: str) -> str:
        # A value the field refused (a NUL, say) is passed on as sent, and `operations` refuses it in words.
        if name in self.cleaned_data:
            return self.cleaned_data[name]
        return str(self.data.get(name, "")).strip()

    def choices(self) -> dict[str, str]:
        """The four choices, defaults filled in; call after `is_valid()`."""
        product, version, priority = self._text("product"), self._text("version"), self._text("priority")
        if product in ProductChoices.values and (not version or not priority):
            setting = ProductSetting.objects.filter(product=product).first()
            if setting is not None:
                version = version or setting.default_version
                priority = priority or setting.default_priority
        return {
            "kind": self._text("kind"),
            "product": product,
            "version": version,
            "priority": priority or PriorityChoices.LOW,
        }


class OperationConfirmForm(OperationChoicesForm):
    """The preview's confirmation: the choices, the reason, what the preview showed (count, last id), and its
    one-time token."""

    reason = forms.CharField(required=False, strip=False)
    expected_count = forms.IntegerField(min_value=0, max_value=MAX_ID)
    max_item_id = forms.IntegerField(min_value=0, max_value=MAX_ID)
    #: The preview's one-time token: a second confirmation of it shows the operation the first one started.
    confirm_token = forms.CharField(max_length=64)


class OperationRetryForm(forms.Form):
    """Retry an operation's failures: an optional reason (a blank one takes the operation's own)."""

    reason = forms.CharField(required=False)


class WebhookPayloadForm(forms.Form):
    """The webhook's JSON object. Fields take the values as decoded (no coercion of a number to a string);
    `first_error()` is the message for the sender."""

    inventory_id = forms.Field(required=False)
    product = forms.Field(required=False)
    version = forms.Field(required=False)
    timestamp = forms.Field(required=False)
    type = forms.Field(required=False)

    def _required_string(self, name: str) -> str:
        value = self.cleaned_data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise forms.ValidationError(f"`{name}` is required and must be a non-empty string.")
        return self._storable(name, value)

    @staticmethod
    def _storable(name: str, value: str) -> str:
        try:
            validate_storable_text(value)
        except forms.ValidationError as error:
            raise forms.ValidationError(f"`{name}`: {error.messages[0]}") from error
        return value

    def _too_long(self) -> forms.ValidationError:
        return forms.ValidationError(
            f"`inventory_id` ({INVENTORY_ID_MAX_LENGTH}) or `version` ({VERSION_MAX_LENGTH}) is too long."
        )

    def clean_inventory_id(self) -> str:
        value = self._required_string("inventory_id")
        if len(value) > INVENTORY_ID_MAX_LENGTH:
            raise self._too_long()
        return value

    def clean_product(self) -> str:
        value = self._required_string("product")
        if value not in ProductChoices.values:
            raise forms.ValidationError(f"`product` {value[:40]!r} is not a known Vionlabs product.")
        return value

    def clean_version(self) -> str:
        value = self._required_string("version")
        if len(value) > VERSION_MAX_LENGTH:
            raise self._too_long()
        return value

    def clean_timestamp(self) -> str:
        if "timestamp" not in self.data:
            return ""
        value = self.cleaned_data.get("timestamp")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise forms.ValidationError("`timestamp` must be a string or a number.")
        return self._storable("timestamp", str(value)[:64])

    def clean_type(self) -> str:
        value = self.cleaned_data.get("type")
        return self._storable("type", value[:32]) if isinstance(value, str) else ""

    def first_error(self) -> str:
        """The first problem, in field order (the task's key first)."""
        for name in self.fields:
            if name in self.errors:
                return str(self.errors[name][0])
        return ""


#: Largest minute value the result parameters accept (ten hours: longer than any asset).
RESULT_PARAM_MAX_MINUTES = 600


class ResultParamsForm(forms.Form):
    """The separation and skip minutes of an ad-break result; each optional (empty: Vionlabs' default)."""

    minimum_separation = forms.FloatField(
        required=False, min_value=0, max_value=RESULT_PARAM_MAX_MINUTES, label="Min. separation (min)"
    )
    maximum_separation = forms.FloatField(
        required=False, min_value=0, max_value=RESULT_PARAM_MAX_MINUTES, label="Max. separation (min)"
    )
    skip_first = forms.FloatField(
        required=False, min_value=0, max_value=RESULT_PARAM_MAX_MINUTES, label="Skip first (min)"
    )
    skip_last = forms.FloatField(
        required=False, min_value=0, max_value=RESULT_PARAM_MAX_MINUTES, label="Skip last (min)"
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        low, high = cleaned.get("minimum_separation"), cleaned.get("maximum_separation")
        if low is not None and high is not None and low > high:
            self.add_error("maximum_separation", "Must not be less than the minimum separation.")
        return cleaned

    def params(self) -> ResultParams:
        """The valid parameters (call after is_valid(); an unbound form gives Vionlabs' defaults)."""
        if not self.is_bound:
            return ResultParams()
        return ResultParams.from_dict(self.cleaned_data)
