"""Users, products and catalog rows for the UI tests (views, access, poll, security)."""

import datetime as dt

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from dashboard.catalog.models import (
    CatalogItem,
    EventAction,
    EventSource,
    ItemKind,
    ProductSetting,
    ProductTask,
    TaskEvent,
)


def make_user(django_user_model, username: str, group: str | None):
    user = django_user_model.objects.create_user(username=username, password=f"{username}-pw-1")
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def viewer(django_user_model):
    return make_user(django_user_model, "victor", "Viewers")


@pytest.fixture
def operator(django_user_model):
    return make_user(django_user_model, "olivia", "Operators")


@pytest.fixture
def nobody(django_user_model):
    """Logged in, but in no group: may see nothing."""
    return make_user(django_user_model, "nadia", None)


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def products(db):
    return [
        ProductSetting.objects.create(product="adbreaks", default_version="1.0.1", position=1),
        ProductSetting.objects.create(product="markers", default_version="2", position=2),
        ProductSetting.objects.create(product="nudity", default_version="1", enabled=False, position=3),
    ]


def add_items(n: int, *, prefix: str = "item", statuses=("done", "pending", "failed", "processing")):
    """n standalone items, each with an adbreaks task (cycling statuses) and an event; markers left out."""
    now = timezone.now()
    items = CatalogItem.objects.bulk_create(
        [CatalogItem(inventory_id=f"{prefix}-{i:05d}", title=f"Title {i}") for i in range(n)]
    )
    tasks = ProductTask.objects.bulk_create(
        [
            ProductTask(
                item=item,
                product="adbreaks",
                version="1.0.1",
                status=statuses[i % len(statuses)],
                error="S3 asset missing" if statuses[i % len(statuses)] == "failed" else "",
                requested_at=now - dt.timedelta(hours=1),
                status_changed_at=now - dt.timedelta(minutes=30),
                links=[{"name": "self", "method": "GET", "href": "https://api.example.com/t/1"}],
            )
            for i, item in enumerate(items)
        ]
    )
    TaskEvent.objects.bulk_create(
        [
            TaskEvent(
                task=task,
                action=EventAction.CREATE,
                source=EventSource.USER,
                status_before="",
                status_after="pending",
                created_at=now - dt.timedelta(hours=1),
            )
            for task in tasks
        ]
    )
    return items, tasks


def add_series(*, seasons: int = 2, episodes: int = 5, prefix: str = "show"):
    """A series with seasons of episodes; episodes have adbreaks tasks: all done but one failed and one
    missing per season."""
    series = CatalogItem.objects.create(inventory_id=prefix, title="A show", kind=ItemKind.SERIES)
    for s in range(seasons):
        season = CatalogItem.objects.create(
            inventory_id=f"{prefix}-s{s}", kind=ItemKind.SEASON, parent=series
        )
        for e in range(episodes):
            episode = CatalogItem.objects.create(
                inventory_id=f"{prefix}-s{s}e{e}", kind=ItemKind.EPISODE, parent=season
            )
            if e == episodes - 1:
                continue  # missing
            ProductTask.objects.create(
                item=episode, product="adbreaks", version="1.0.1", status="failed" if e == 0 else "done"
            )
    return series
