"""Every URL of the catalog app, as anonymous, a user without a role, a viewer and an operator, GET and POST.

The URLs come from the resolver, so a view added later (the operation views included) is covered without
anyone remembering to add it here.
"""

from __future__ import annotations

import pytest
import responses
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from dashboard.catalog.models import Operation, OperationKind, ProductTask
from tests.factories import add_items

# Fixtures shared by the UI test modules.

# Views reachable without a login, on purpose. A new one must be added here knowingly.
PUBLIC = {"webhook-vionlabs"}
# Read views that answer a reader with a redirect (the shareable link), not a page.
REDIRECTS = {"item-by-id"}


def catalog_patterns() -> list[URLPattern]:
    def walk(patterns, namespace):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, p.namespace or namespace)
            elif namespace == "catalog":
                yield p

    return list(walk(get_resolver().url_patterns, None))


PATTERNS = catalog_patterns()
NAMES = [p.name for p in PATTERNS]


@pytest.fixture
def objects(db, products):
    items, tasks = add_items(2)
    operation = Operation.objects.create(kind=OperationKind.REFRESH, reason="test", total=0)
    return {"item": items[0], "task": tasks[0], "operation": operation}


def url_for(name: str, objects) -> str:
    pattern = next(p for p in PATTERNS if p.name == name)
    if "inventory_id" in pattern.pattern.converters:
        return reverse(f"catalog:{name}", kwargs={"inventory_id": objects["item"].inventory_id})
    if "pk" not in pattern.pattern.converters:
        assert not pattern.pattern.converters, f"{name}: teach url_for its arguments"
        return reverse(f"catalog:{name}")
    route = str(pattern.pattern)
    if route.startswith("items/"):
        pk = objects["item"].pk
    elif route.startswith("tasks/"):
        pk = objects["task"].pk
    elif route.startswith("operations/"):
        pk = objects["operation"].pk
    else:
        raise AssertionError(f"{name}: which object does {route!r} take?")
    return reverse(f"catalog:{name}", kwargs={"pk": pk})


def is_public(name: str) -> bool:
    pattern = next(p for p in PATTERNS if p.name == name)
    return getattr(pattern.callback, "login_required", True) is False


@pytest.fixture(autouse=True)
def no_network(settings):
    """Operators' POSTs reach the services: any HTTP call they make fails here, fast and offline."""
    settings.VIONLABS_API_URL = "http://vionlabs.invalid"
    settings.VIONLABS_MAX_RETRIES = 0
    with responses.RequestsMock(assert_all_requests_are_fired=False):
        yield


def test_every_catalog_url_is_covered():
    assert {"overview", "item-list", "item-detail", "task-list", "poll", "task-create"} <= set(NAMES)


def test_only_the_listed_views_are_public():
    assert {name for name in NAMES if is_public(name)} <= PUBLIC


@pytest.mark.parametrize("name", sorted(PUBLIC & set(NAMES)))
def test_public_views_do_not_send_to_the_login(client, objects, name):
    response = client.post(url_for(name, objects))
    assert response.status_code != 302


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("name", [n for n in NAMES if n not in PUBLIC])
def test_anonymous_is_sent_to_the_login(client, objects, name, method):
    url = url_for(name, objects)
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


@pytest.mark.parametrize("name", [n for n in NAMES if n not in PUBLIC])
def test_anonymous_htmx_request_gets_a_whole_page_redirect(client, objects, name):
    url = url_for(name, objects)
    response = client.get(
        url, headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/items/?q=x"}
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/login/?next=/items/%3Fq%3Dx"
    assert b"<form" not in response.content


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("name", [n for n in NAMES if n not in PUBLIC])
def test_user_without_a_role_sees_nothing(client, nobody, objects, name, method):
    client.force_login(nobody)
    response = getattr(client, method)(url_for(name, objects))
    assert response.status_code in {403, 405}


def is_post_only(client, url) -> bool:
    return client.get(url).status_code == 405


@pytest.mark.parametrize("name", [n for n in NAMES if n not in PUBLIC])
def test_viewer_can_read_but_not_act(client, viewer, objects, name):
    client.force_login(viewer)
    url = url_for(name, objects)
    get = client.get(url)
    post = client.post(url)
    if get.status_code == 405:  # an action
        assert post.status_code == 403
    else:
        assert get.status_code == (302 if name in REDIRECTS else 200)
        # A read-only view refuses POST outright, and none lets a viewer change anything.
        assert post.status_code in {403, 405}
    assert ProductTask.objects.filter(pk=objects["task"].pk, status="done").exists()


@pytest.mark.parametrize("name", [n for n in NAMES if n not in PUBLIC])
def test_operator_can_read_and_act(client, operator, objects, name):
    client.force_login(operator)
    url = url_for(name, objects)
    get = client.get(url)
    assert get.status_code in ({302} if name in REDIRECTS else {200, 405})
    post = client.post(url, headers={"HX-Request": "true"})
    assert post.status_code not in {401, 403}
    assert post.status_code < 500
    if get.status_code == 405:
        # Actions answer an htmx request with a fragment (errors inline) or a redirect htmx follows, never a
        # 4xx/5xx that htmx would not swap.
        assert post.status_code in {200, 204, 286, 302, 303} or post.has_header("HX-Redirect")


def test_htmx_request_with_expired_session_redirects_the_whole_page(client, objects, operator):
    client.force_login(operator)
    client.logout()
    response = client.get(
        reverse("catalog:poll"), headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/tasks/"}
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/login/?next=/tasks/"


def test_plain_request_with_expired_session_gets_the_login_redirect(client, objects):
    response = client.get(reverse("catalog:task-list"))
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/tasks/"


def test_a_refused_action_explains_the_roles(client, viewer, objects):
    client.force_login(viewer)
    response = client.post(reverse("catalog:task-refresh", args=[objects["task"].pk]))
    assert response.status_code == 403
    assert b"Ask an administrator to add you to the Operators group" in response.content
