"""The shareable link of an item, /items/by-id/<inventory id>: any characters, slashes included."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.urls import reverse

from dashboard.catalog.models import CatalogItem
from tests.factories import add_items

ODD_IDS = [
    "tt0111161/4k",
    "a/b/c/",
    "/leading-slash",
    "spaces and ünïcödé",
    "100% pure?x=1#frag",
    "already%2Fencoded",
    "semi;colon&amp+plus",
]


@pytest.mark.parametrize("inventory_id", ODD_IDS)
def test_by_id_redirects_to_the_item_page(viewer_client, db, inventory_id):
    item = CatalogItem.objects.create(inventory_id=inventory_id)
    url = reverse("catalog:item-by-id", args=[inventory_id])
    response = viewer_client.get(url)
    assert response.status_code == 302
    assert response["Location"] == reverse("catalog:item-detail", args=[item.pk])


@pytest.mark.parametrize("inventory_id", ODD_IDS)
def test_a_hand_percent_encoded_link_works_too(viewer_client, db, inventory_id):
    item = CatalogItem.objects.create(inventory_id=inventory_id)
    response = viewer_client.get("/items/by-id/" + quote(inventory_id, safe=""))
    assert response.status_code == 302
    assert response["Location"] == reverse("catalog:item-detail", args=[item.pk])


def test_an_unknown_id_is_a_clear_404(viewer_client, db):
    response = viewer_client.get(reverse("catalog:item-by-id", args=["nope/4k"]))
    assert response.status_code == 404
    html = response.content.decode()
    assert "No item in the catalog has the inventory id" in html
    assert "nope/4k" in html
    assert "?q=nope%2F4k" in html


def test_by_id_needs_a_viewer(client, nobody, db):
    CatalogItem.objects.create(inventory_id="film")
    client.force_login(nobody)
    assert client.get(reverse("catalog:item-by-id", args=["film"])).status_code == 403


def test_by_id_needs_a_login(client, db):
    CatalogItem.objects.create(inventory_id="film")
    response = client.get(reverse("catalog:item-by-id", args=["film"]))
    assert response.status_code == 302
    assert "login" in response["Location"]


def test_the_item_page_shows_its_shareable_link(viewer_client, db):
    item = CatalogItem.objects.create(inventory_id="tt1/4k ?x")
    html = viewer_client.get(reverse("catalog:item-detail", args=[item.pk])).content.decode()
    link = reverse("catalog:item-by-id", args=[item.inventory_id])
    assert link == "/items/by-id/tt1/4k%20%3Fx"
    assert f'id="share-link" href="{link}"' in html


def test_search_results_link_to_the_shareable_link(viewer_client, products):
    add_items(3)
    html = viewer_client.get(reverse("catalog:item-list"), {"q": "item-00001"}).content.decode()
    assert 'href="/items/by-id/item-00001"' in html
