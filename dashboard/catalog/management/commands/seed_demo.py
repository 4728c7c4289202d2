"""`manage.py seed_demo [--if-empty] [--items N]`: a demo catalog with tasks in every status, and three logins.

The catalog goes through the same importer as files (import_rows). Finished tasks (done, failed, deactivated)
are written directly with one TaskEvent each (source import, note "demo data"). In-flight tasks are created for
real through services.task_create when the configured API is the sandbox and answers, so they progress live
in the dashboard; otherwise they are written directly too, and the command says so. Against the sandbox, every
task the dashboard knows is then loaded into it (POST /_sandbox/tasks), also on `--if-empty` runs, because the
sandbox forgets everything when it restarts. Demo tasks are never sent to a real Vionlabs API. Running it again changes nothing that exists (items are upserted, tasks, settings,
groups and users are only added when missing); the catalog is the same every time (a fixed random seed).
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from dashboard.catalog import services
from dashboard.catalog.imports import import_rows
from dashboard.catalog.management.progress import Progress
from dashboard.catalog.models import (
    CatalogItem,
    EventAction,
    EventSource,
    ItemKind,
    PriorityChoices,
    ProductChoices,
    ProductSetting,
    ProductTask,
    TaskEvent,
    TaskStatus,
)
from dashboard.catalog.permissions import APP_LABEL, OPERATORS, ROLES, VIEWERS
from dashboard.vionlabs import VionlabsClient
from dashboard.vionlabs.errors import VionlabsError

NOTE = "demo data"
SEED = 20240917

# (product, default version, default priority): the enabled products; every other product is disabled.
ENABLED_PRODUCTS: list[tuple[str, str, str]] = [
    (ProductChoices.ADBREAKS, "op-adbreak-v6", PriorityChoices.MEDIUM),
    (ProductChoices.JITTHUMBNAILS, "1.0.1", PriorityChoices.LOW),
    (ProductChoices.FINGERPRINT, "2.3.0", PriorityChoices.LOW),
    (ProductChoices.SCENE_TAGS, "1.0.1", PriorityChoices.LOW),
]
DISABLED_VERSION = "1.0.0"

FAILURES = [
    "Source asset not found in storage: s3://media-ingest/{id}/master.mov",
    "Probe failed: could not decode the video stream (codec prores_ks, profile 4444xq is not supported)",
    "Unsupported video length: 00:00:41 is shorter than the 5 minute minimum",
    "No audio stream in the source asset; this product needs one",
    "Source asset is still being transferred to storage; try again when the upload has finished",
]

_ADJECTIVES = [
    "Silent",
    "Crimson",
    "Hidden",
    "Last",
    "Broken",
    "Golden",
    "Northern",
    "Endless",
    "Frozen",
    "Quiet",
    "Burning",
    "Distant",
    "Hollow",
    "Wild",
    "Midnight",
    "Paper",
    "Glass",
    "Iron",
    "Velvet",
    "Restless",
    "Lonely",
    "Secret",
    "Bright",
    "Little",
]
_NOUNS = [
    "Harbour",
    "Orchard",
    "Frontier",
    "Lantern",
    "Kingdom",
    "Signal",
    "Garden",
    "Tide",
    "Mirror",
    "Circuit",
    "Station",
    "Winter",
    "Compass",
    "River",
    "Archive",
    "Echo",
    "Ember",
    "Meridian",
    "Atlas",
    "Canyon",
    "Lighthouse",
    "Parade",
    "Voyage",
    "Crown",
    "Summer",
    "Horizon",
]
_PLACES = [
    "Halden",
    "Marrow",
    "Bay",
    "Oslo",
    "Kestrel",
    "Point",
    "Vale",
    "Lisbon",
    "Arden",
    "Brightwater",
    "Tallinn",
    "Ironwood",
]
_GENRES = ["drama", "comedy", "thriller", "documentary", "crime", "sci-fi", "romance", "family", "horror"]
_EPISODES = [
    "Pilot",
    "Arrivals",
    "The Long Night",
    "Crossing",
    "Old Debts",
    "Undertow",
    "Homecoming",
    "The Letter",
    "Fault Lines",
    "Low Tide",
    "Smoke and Mirrors",
    "The Inheritance",
    "Northbound",
    "First Light",
    "The Quiet Room",
    "Aftermath",
]


def _title(rng: random.Random) -> str:
    pattern = rng.randrange(4)
    adjective, noun, place = rng.choice(_ADJECTIVES), rng.choice(_NOUNS), rng.choice(_PLACES)
    if pattern == 0:
        return f"The {adjective} {noun}"
    if pattern == 1:
        return f"{noun} of {place}"
    if pattern == 2:
        return f"{adjective} {noun}"
    return f"A {noun} in {place}"


def demo_catalog(total: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    """Rows for import_rows: about 40 % movies, the rest series → seasons → episodes, `total` items in all."""
    movies = max(1, round(total * 0.4))
    made = 0
    series_number = 0
    while made < total - movies:
        series_number += 1
        seasons = rng.randint(1, 3)
        episodes = rng.randint(4, 8)
        if made + 1 + seasons * (1 + episodes) > total - movies:
            break
        sid = f"sr-{series_number:04}"
        year = rng.randint(2008, 2024)
        yield {
            "inventory_id": sid,
            "title": _title(rng),
            "kind": ItemKind.SERIES,
            "year": year,
            "genres": rng.sample(_GENRES, 2),
        }
        made += 1
        for season in range(1, seasons + 1):
            season_id = f"{sid}/s{season:02}"
            yield {
                "inventory_id": season_id,
                "title": f"Season {season}",
                "kind": ItemKind.SEASON,
                "parent_id": sid,
                "year": year + season - 1,
            }
            made += 1
            for episode in range(1, episodes + 1):
                # One episode in a few series is missing its source file: the sandbox fails ids with "fail".
                suffix = "-fail" if series_number % 4 == 2 and season == 1 and episode == 3 else ""
                yield {
                    "inventory_id": f"{season_id}/e{episode:02}{suffix}",
                    "title": rng.choice(_EPISODES),
                    "kind": ItemKind.EPISODE,
                    "parent_id": season_id,
                    "runtime_minutes": rng.randint(38, 62),
                }
                made += 1
    for number in range(1, total - made + 1):
        suffix = "-fail" if number % 23 == 7 else ""
        yield {
            "inventory_id": f"mv-{number:04}{suffix}",
            "title": _title(rng),
            "kind": ItemKind.STANDALONE,
            "year": rng.randint(1962, 2024),
            "genres": rng.sample(_GENRES, rng.randint(1, 2)),
            "runtime_minutes": rng.randint(84, 168),
            "language": rng.choice(["en", "en", "en", "sv", "fr", "de", "es"]),
        }


@dataclass(frozen=True)
class _Planned:
    item: CatalogItem
    product: str
    version: str
    status: str
    error: str = ""
    priority: str = PriorityChoices.LOW
    age_hours: float = 24.0


class Command(BaseCommand):
    help = (
        "Load a demo catalog with tasks in every status and create the demo logins (admin, operator, viewer)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--if-empty", action="store_true", help="do nothing when the catalog has items")
        parser.add_argument("--items", type=int, default=300, help="number of catalog items (default 300)")
        parser.add_argument(
            "--no-api", action="store_true", help="write in-flight tasks directly instead of creating them"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["items"] < 10:
            raise CommandError("--items must be at least 10.")
        reason = "--no-api" if options["no_api"] else self._api_unusable()
        if options["if_empty"] and (count := CatalogItem.objects.count()):
            self.stdout.write(
                f"The catalog already has {count} items: no demo data loaded. The demo logins were printed when "
                "it was first loaded; `manage.py changepassword admin` sets a new password."
            )
            if not reason:
                self._mirror_into_sandbox()
            return
        rng = random.Random(SEED)  # noqa: S311 - the same demo catalog every run, not a secret
        with Progress(self.stdout, label="Demo catalog", total=options["items"], unit="items") as progress:
            report = import_rows(demo_catalog(options["items"], rng), on_batch=progress.update)
        if not report.ok:  # the generator's own bug: say so rather than half-seed silently
            raise CommandError(f"Demo catalog rows were refused: {'; '.join(map(str, report.errors[:5]))}")
        self._product_settings()
        users = self._logins()
        items = list(
            CatalogItem.objects.filter(kind__in=[ItemKind.STANDALONE, ItemKind.EPISODE]).order_by(
                "inventory_id"
            )
        )
        final, in_flight = self._plan(items, rng)
        written = self._write_direct(final)
        if not reason:
            self._mirror_into_sandbox()
        live, how = self._in_flight(in_flight, reason, users["operator"][0])
        self._print_summary(written, live, how, users)

    # --- settings and logins -------------------------------------------------------------------------------

    def _product_settings(self) -> None:
        enabled = {product: (version, priority) for product, version, priority in ENABLED_PRODUCTS}
        for position, product in enumerate(ProductChoices.values):
            version, priority = enabled.get(product, (DISABLED_VERSION, PriorityChoices.LOW))
            # get_or_create: what an admin changed since the last run stays as it is.
            ProductSetting.objects.get_or_create(
                product=product,
                defaults={
                    "enabled": product in enabled,
                    "default_version": version,
                    "default_priority": priority,
                    "position": position,
                },
            )

    def _group(self, name: str) -> Group:
        group, created = Group.objects.get_or_create(name=name)
        if created:  # made by the roles migration normally; only a missing group gets permissions here
            group.permissions.add(
                *Permission.objects.filter(content_type__app_label=APP_LABEL, codename__in=ROLES[name])
            )
        return group

    def _logins(self) -> dict[str, tuple[Any, str | None]]:
        """The three demo users; a password (random) only for a user created now."""
        user_model = get_user_model()
        operators = self._group(OPERATORS)
        viewers = self._group(VIEWERS)
        result: dict[str, tuple[Any, str | None]] = {}
        for username, group in (("admin", None), ("operator", operators), ("viewer", viewers)):
            user = user_model.objects.filter(username=username).first()
            password = None
            if user is None:
                password = secrets.token_urlsafe(9)
                if group is None:
                    user = user_model.objects.create_superuser(username, f"{username}@example.com", password)
                else:
                    user = user_model.objects.create_user(username, f"{username}@example.com", password)
            if group is not None:
                user.groups.add(group)
            result[username] = (user, password)
        return result

    # --- tasks ---------------------------------------------------------------------------------------------

    def _plan(self, items: list[CatalogItem], rng: random.Random) -> tuple[list[_Planned], list[_Planned]]:
        """Which finished tasks to write, and which in-flight ones to create (deterministic)."""
        versions = {product: version for product, version, _ in ENABLED_PRODUCTS}
        final: list[_Planned] = []
        in_flight: list[_Planned] = []
        for index, item in enumerate(items):
            if "fail" in item.inventory_id:
                error = FAILURES[0].format(id=item.inventory_id)
                final.append(_Planned(item, ProductChoices.ADBREAKS, versions["adbreaks"], "failed", error))
                in_flight.append(
                    _Planned(item, ProductChoices.FINGERPRINT, versions["fingerprint"], "pending")
                )
                continue
            age = rng.uniform(2, 24 * 30)
            roll = rng.random()
            if roll < 0.70:
                final.append(
                    _Planned(item, ProductChoices.ADBREAKS, versions["adbreaks"], "done", age_hours=age)
                )
            elif roll < 0.76:
                error = rng.choice(FAILURES[1:])
                final.append(
                    _Planned(
                        item, ProductChoices.ADBREAKS, versions["adbreaks"], "failed", error, age_hours=age
                    )
                )
            elif roll < 0.80:
                final.append(
                    _Planned(
                        item, ProductChoices.ADBREAKS, versions["adbreaks"], "deactivated", age_hours=age
                    )
                )
            if index % 9 == 0:
                # An older version, replaced by the current one: shows that versions are kept apart.
                final.append(
                    _Planned(
                        item, ProductChoices.ADBREAKS, "op-adbreak-v5", "deactivated", age_hours=age + 400
                    )
                )
            if rng.random() < 0.5:
                final.append(
                    _Planned(
                        item, ProductChoices.JITTHUMBNAILS, versions["jitthumbnails"], "done", age_hours=age
                    )
                )
            if rng.random() < 0.35:
                status = "done" if rng.random() < 0.9 else "failed"
                error = rng.choice(FAILURES[1:]) if status == "failed" else ""
                final.append(
                    _Planned(
                        item,
                        ProductChoices.FINGERPRINT,
                        versions["fingerprint"],
                        status,
                        error,
                        age_hours=age,
                    )
                )
            if index % 23 == 3:
                in_flight.append(
                    _Planned(
                        item, ProductChoices.SCENE_TAGS, versions["scene_tags"], "pending", priority="high"
                    )
                )
            elif index % 29 == 5:
                in_flight.append(_Planned(item, ProductChoices.JITTHUMBNAILS, "1.0.2", "processing"))
        if items:
            # A status Vionlabs may send that this dashboard does not know: shown as it comes, never polled.
            final.append(_Planned(items[1], ProductChoices.SCENE_TAGS, "1.0.0", "queued", age_hours=3))
        return final, in_flight

    def _write_direct(self, planned: list[_Planned]) -> list[ProductTask]:
        """Write tasks and their one event each; tasks that exist already are left alone."""
        existing = set(ProductTask.objects.values_list("item_id", "product", "version"))
        now = timezone.now()
        tasks: list[ProductTask] = []
        for plan in planned:
            if (plan.item.pk, plan.product, plan.version) in existing:
                continue
            existing.add((plan.item.pk, plan.product, plan.version))
            requested = now - dt.timedelta(hours=plan.age_hours)
            changed = (
                requested if plan.status in TaskStatus.IN_FLIGHT else requested + dt.timedelta(minutes=18)
            )
            tasks.append(
                ProductTask(
                    item=plan.item,
                    product=plan.product,
                    version=plan.version,
                    priority=plan.priority,
                    status=plan.status,
                    error=plan.error,
                    links=_links(plan),
                    requested_at=requested,
                    status_changed_at=changed,
                    last_checked_at=changed + dt.timedelta(minutes=2),
                )
            )
        with transaction.atomic():
            ProductTask.objects.bulk_create(tasks)
            TaskEvent.objects.bulk_create(
                TaskEvent(
                    task=task,
                    created_at=task.status_changed_at or now,  # always set above
                    source=EventSource.IMPORT,
                    action=EventAction.DEACTIVATE if task.status == "deactivated" else EventAction.CREATE,
                    status_before="done" if task.status == "deactivated" else "",
                    status_after=task.status,
                    error=task.error,
                    note=NOTE,
                )
                for task in tasks
            )
        return tasks

    def _in_flight(
        self, planned: list[_Planned], reason: str, operator: Any
    ) -> tuple[list[ProductTask], str]:
        """Create in-flight tasks through the service against the sandbox (`reason` says why not, if not);
        else write them directly."""
        existing = set(ProductTask.objects.values_list("item_id", "product", "version"))
        planned = [p for p in planned if (p.item.pk, p.product, p.version) not in existing]
        if not planned:
            return [], "(all there already)"
        if reason:
            tasks = self._write_direct(
                [
                    _Planned(p.item, p.product, p.version, p.status, priority=p.priority, age_hours=0.05)
                    for p in planned
                ]
            )
            return tasks, f"written directly ({reason}), so they will not progress"
        tasks = []
        for plan in planned:
            try:
                tasks.append(
                    services.task_create(
                        item=plan.item,
                        product=plan.product,
                        version=plan.version,
                        priority=plan.priority,
                        actor=operator,
                        source=EventSource.IMPORT,
                        note=NOTE,
                    )
                )
            except services.ActionRefused:
                continue
            except VionlabsError as exc:
                self.stderr.write(f"Could not create {plan.item.inventory_id} {plan.product}: {exc}")
        return tasks, f"created through the API at {settings.VIONLABS_API_URL}; they progress live"

    def _api_unusable(self) -> str:
        """Why in-flight demo tasks cannot be created for real ("" when they can)."""
        if settings.VIONLABS_API_KEY != settings.SANDBOX_API_KEY:
            # Demo ids must never reach a real Vionlabs account.
            return "the configured API is not the sandbox"
        client = VionlabsClient(
            base_url=settings.VIONLABS_API_URL, api_key=settings.VIONLABS_API_KEY, timeout=2.0, max_retries=0
        )
        try:
            client.list_catalog_items(page_num=0, page_size=1)
        except VionlabsError as exc:
            return f"the sandbox at {settings.VIONLABS_API_URL} does not answer: {exc}"
        finally:
            client.close()
        return ""

    def _mirror_into_sandbox(self) -> None:
        """Tell the sandbox about every task the dashboard knows, as the dashboard last saw it.

        The sandbox keeps its tasks in memory: without this, a restarted `make run` (or finished demo tasks
        written straight to the database) would get 404 for every task on the first refresh."""
        rows = [
            {
                "inventory_id": inventory_id,
                "product": product,
                "version": version,
                "status": status,
                "error": error or None,
                "priority": priority,
            }
            for inventory_id, product, version, status, error, priority in ProductTask.objects.exclude(
                status=""
            ).values_list("item__inventory_id", "product", "version", "status", "error", "priority")
        ]
        url = f"{str(settings.VIONLABS_API_URL).rstrip('/')}/_sandbox/tasks"
        for start in range(0, len(rows), 1000):
            try:
                answer = requests.post(
                    url,
                    params={"key": settings.VIONLABS_API_KEY},
                    json={"tasks": rows[start : start + 1000]},
                    timeout=10,
                )
            except requests.RequestException:
                answer = None
            if answer is None or answer.status_code != 200:
                code = "no answer" if answer is None else f"HTTP {answer.status_code}"
                self.stderr.write(
                    f"The sandbox did not take the dashboard's tasks ({code}); refreshes may 404."
                )
                return
        self.stdout.write(f"Sandbox told about the {len(rows)} tasks this dashboard knows.")

    # --- output -------------------------------------------------------------------------------------------

    def _print_summary(
        self,
        written: list[ProductTask],
        live: list[ProductTask],
        how: str,
        users: dict[str, tuple[Any, str | None]],
    ) -> None:
        kinds = Counter(CatalogItem.objects.values_list("kind", flat=True))
        statuses = Counter(ProductTask.objects.values_list("status", flat=True))
        self.stdout.write(
            "Demo catalog: "
            + ", ".join(f"{kinds[kind]} {label.lower()}" for kind, label in ItemKind.choices)
            + f" items; {ProductTask.objects.count()} tasks ("
            + ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
            + ")."
        )
        self.stdout.write(f"Finished tasks written now: {len(written)}. In-flight tasks: {len(live)} {how}.")
        self.stdout.write(self.style.SUCCESS("Demo logins:"))
        roles = {"admin": "superuser", "operator": f"group {OPERATORS}", "viewer": f"group {VIEWERS}"}
        for username, (_, password) in users.items():
            shown = password or "(existed already; password unchanged)"
            self.stdout.write(f"  {username:<9} {shown:<40} {roles[username]}")


def _links(plan: _Planned) -> list[dict[str, str]]:
    """Links like the ones Vionlabs sends (names kept generic), as the services store them."""
    href = (
        f"{str(settings.VIONLABS_API_URL).rstrip('/')}/tasks/catalog-item/{quote(plan.item.inventory_id, safe='')}"
        f"/product/{plan.product}/version/{quote(plan.version, safe='')}"
    )
    links = [{"name": "self", "method": "GET", "href": href}]
    if plan.status == "done":
        links.append({"name": "results", "method": "GET", "href": href.replace("/tasks/", "/results/", 1)})
    return links
