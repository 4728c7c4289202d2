"""Which kinds of item a product applies to: the per-product setting and the one rule built on it."""

from __future__ import annotations

import pytest

from dashboard.catalog.forms import ProductSettingForm
from dashboard.catalog.models import CatalogItem, ItemKind, ProductSetting


@pytest.fixture
def series(db):
    """sr (series) → sr/s01, sr/s02 (seasons) → two episodes each; plus a standalone film."""
    top = CatalogItem.objects.create(inventory_id="sr", kind=ItemKind.SERIES)
    for s in (1, 2):
        season = CatalogItem.objects.create(inventory_id=f"sr/s0{s}", kind=ItemKind.SEASON, parent=top)
        for e in (1, 2):
            CatalogItem.objects.create(inventory_id=f"sr/s0{s}e0{e}", kind=ItemKind.EPISODE, parent=season)
    CatalogItem.objects.create(inventory_id="film", kind=ItemKind.STANDALONE)
    return top


def ids(qs) -> list[str]:
    return sorted(qs.values_list("inventory_id", flat=True))


def test_a_new_product_applies_to_standalone_items_and_episodes(db):
    setting = ProductSetting.objects.create(product="adbreaks", default_version="1")
    assert setting.applies_to == ["standalone", "episode"]
    assert setting.applies(ItemKind.EPISODE)
    assert not setting.applies(ItemKind.SERIES)


def test_a_series_stands_for_its_episodes_when_the_product_is_for_episodes(series):
    setting = ProductSetting.objects.create(product="adbreaks", default_version="1")
    chosen = CatalogItem.objects.filter(inventory_id__in=["sr", "film"])
    assert ids(chosen.covered_for(setting)) == ["film", "sr/s01e01", "sr/s01e02", "sr/s02e01", "sr/s02e02"]


def test_a_season_stands_for_its_own_episodes_only(series):
    setting = ProductSetting.objects.create(product="adbreaks", default_version="1")
    chosen = CatalogItem.objects.filter(inventory_id="sr/s02")
    assert ids(chosen.covered_for(setting)) == ["sr/s02e01", "sr/s02e02"]


def test_a_container_the_product_applies_to_is_sent_as_itself(series):
    setting = ProductSetting.objects.create(
        product="markers", default_version="1", applies_to=["series", "episode"]
    )
    chosen = CatalogItem.objects.filter(inventory_id__in=["sr", "sr/s01e01"])
    assert ids(chosen.covered_for(setting)) == ["sr", "sr/s01e01"]


def test_a_product_for_seasons_covers_a_series_by_its_seasons(series):
    setting = ProductSetting.objects.create(product="markers", default_version="1", applies_to=["season"])
    chosen = CatalogItem.objects.filter(inventory_id="sr")
    assert ids(chosen.covered_for(setting)) == ["sr/s01", "sr/s02"]


def test_items_of_other_kinds_are_left_out(series):
    setting = ProductSetting.objects.create(
        product="adbreaks", default_version="1", applies_to=["standalone"]
    )
    assert ids(CatalogItem.objects.all().covered_for(setting)) == ["film"]
    assert ids(CatalogItem.objects.applicable_to(setting)) == ["film"]


def _form_data(**overrides):
    data = {
        "product": "adbreaks",
        "enabled": "on",
        "default_version": "1",
        "default_priority": "low",
        "position": "0",
        "applies_to": ["episode", "standalone"],
    }
    data.update(overrides)
    return data


def test_the_admin_form_stores_the_kinds_in_a_fixed_order(db):
    form = ProductSettingForm(data=_form_data())
    assert form.is_valid(), form.errors
    assert form.save().applies_to == ["standalone", "episode"]


@pytest.mark.parametrize("applies_to", [[], ["film"]])
def test_the_admin_form_refuses_no_kind_or_an_unknown_kind(db, applies_to):
    form = ProductSettingForm(data=_form_data(applies_to=applies_to))
    assert not form.is_valid()
    assert "applies_to" in form.errors
    assert not ProductSetting.objects.exists()
