"""Builders for the rows tests need: users in a role, products, catalog items and their tasks.

Plain functions, not fixtures, so a test can make as many as it needs; the fixtures in the conftest.py
files are built from them.
"""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
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

#: The two roles and the groups migration 0003 makes for them.
ROLE_GROUPS = {"viewer": "Viewers", "operator": "Operators"}


def make_user(
    username: str,
    *,
    role: str | None = None,
    password: str | None = None,
    staff: bool = False,
    permissions: tuple[str, ...] = (),
):
    """A user in `role`'s group (none: may see nothing), with extra permissions given by codename."""
    user = get_user_model().objects.create_user(username=username, password=password, is_staff=staff)
    if role:
        user.groups.add(Group.objects.get(name=ROLE_GROUPS[role]))
    if permissions:
        user.user_permissions.set(Permission.objects.filter(codename__in=permissions))
    return user


def rebuild_role_groups() -> None:
    """Make the role groups again with the permissions their migration gives them.

    Transactional tests (the live server's) flush every table, the migration's groups included; permissions
    come back (post_migrate), groups do not."""
    views = Permission.objects.filter(content_type__app_label="catalog", codename__startswith="view_")
    for role, name in ROLE_GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*views)
        if role == "operator":
            group.permissions.add(
                Permission.objects.get(content_type__app_label="catalog", codename="operate_tasks")
            )


def make_products() -> list[ProductSetting]:
    """Two enabled products and a disabled one, as an organisation would configure them."""
    return [
        ProductSetting.objects.create(product="adbreaks", default_version="1.0.1", position=1),
        ProductSetting.objects.create(product="markers", default_version="2", position=2),
        ProductSetting.objects.create(product="nudity", default_version="1", enabled=False, position=3),
    ]


def make_item(inventory_id: str = "tt0111161/4k", title: str = "The Shawshank Redemption", **fields):
    return CatalogItem.objects.create(inventory_id=inventory_id, title=title, **fields)


def make_task(item, *, product: str = "adbreaks", version: str = "1.0.1", status: str = "pending", **fields):
    return ProductTask.objects.create(item=item, product=product, version=version, status=status, **fields)


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
            make_task(episode, status="failed" if e == 0 else "done")
    return series
