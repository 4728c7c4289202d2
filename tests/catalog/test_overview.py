"""The overview's coverage follows each product's `applies_to`, reads the trigger-kept counts, and its live
regions refresh; the catalog's missing-product filter follows the same rule."""

import pytest
from django.http import QueryDict

from dashboard.catalog.forms import CatalogFilterForm
from dashboard.catalog.models import CatalogItem, ItemKind, ProductSetting, ProductTask
from tests.factories import add_series


def missing(product: str) -> list[str]:
    form = CatalogFilterForm(data=QueryDict(f"missing={product}"))
    assert form.is_valid(), form.errors
    return sorted(form.filter_items(CatalogItem.objects.all()).values_list("inventory_id", flat=True))


def test_missing_filter_lists_only_the_kinds_the_product_applies_to(products):
    add_series(seasons=1, episodes=2, prefix="sr")  # sr (series), sr-s0 (season), sr-s0e0 (task), sr-s0e1
    CatalogItem.objects.create(inventory_id="film", kind=ItemKind.STANDALONE)

    assert missing("adbreaks") == ["film", "sr-s0e1"]


def test_missing_filter_lists_containers_when_the_product_applies_to_them(products):
    add_series(seasons=1, episodes=2, prefix="sr")
    ProductSetting.objects.filter(product="markers").update(applies_to=["series", "season"])

    assert missing("markers") == ["sr", "sr-s0"]


@pytest.mark.django_db
def test_missing_filter_for_an_unconfigured_product_uses_the_default_kinds():
    add_series(seasons=1, episodes=1, prefix="sr")
    ProductTask.objects.all().delete()

    assert missing("emotions") == ["sr-s0e0"]
