"""Every parameter of every view, thrown a list of hostile values: the answer is a 4xx or the page without the
bad parameter, never a 500 (issue 9, item 7). Runs on SQLite and PostgreSQL (which refuses NUL in text and
integers beyond bigint, where SQLite does not)."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote

import pytest
import responses
from django.test import Client

from dashboard.catalog.models import Operation, OperationKind, OperationState
from tests.factories import add_items, add_series


def _cursor(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


#: Raw (already percent-encoded) values: what a browser, a script or an attacker can put in a query or a body.
NASTY = [
    "%00",
    "a%00b",
    "%ed%a0%80",  # a lone surrogate, as UTF-8-ish bytes
    "%ff",
    "%",
    "%C2%B2",  # "²": isdigit() says yes, int() says no
    "%D9%A3",  # an Arabic-Indic three: int() takes it, a database may not
    "9" * 5000,
    "-" + "9" * 5000,
    "-1",
    "1e9",
    "1e999",
    "nan",
    "1,2,%C2%B2,4",
    ",,,",
    "x" * 20000,
    "<script>",
]
#: For free-text and choice parameters, whose parsing is Django's own fields: the values a database or an
#: encoding can trip on. Number-like parameters get all of NASTY.
TEXT = ["%00", "a%00b", "%ed%a0%80", "%ff", "%", "x" * 20000, "9" * 5000, "%C2%B2", "<script>"]
#: Cursors of every wrong shape (plus a few that are not base64 JSON at all).
BAD_CURSORS = [
    _cursor([None, 1]),
    _cursor(["abc", 1]),
    _cursor([[1], 1]),
    _cursor([{"a": 1}, 1]),
    _cursor([1]),
    _cursor([1, 2, 3]),
    _cursor([]),
    _cursor({"a": 1}),
    _cursor("text"),
    _cursor(1),
    _cursor(["a", 10**30]),
    _cursor([10**30, 1]),
    _cursor(["a", -(10**30)]),
    _cursor([1e308, 1]),
    _cursor(["a", True]),
    _cursor([True, 1]),
    _cursor(["a\x00b", 1]),
    _cursor(["\ud800", 1]),
    _cursor(["x" * 1500, 1]),
    _cursor([1.5, 1]),
    _cursor(["2024-01-01", 1]),
    "!!!not-base64!!!",
    base64.urlsafe_b64encode(b"not json").decode(),
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    base64.urlsafe_b64encode(b"[" * 5000).decode(),
]
CURSOR_VALUES = TEXT + BAD_CURSORS
#: A viewer runs the same parsing code (the permission check comes first, then the same forms), so the viewer
#: pass throws the sharpest values only and keeps the suite quick.
SHARPEST = {"%00", "%ed%a0%80", "%ff", "%C2%B2", "9" * 5000, BAD_CURSORS[0], BAD_CURSORS[1], BAD_CURSORS[2]}

CATALOG_PARAMS = ["q", "product", "status", "version", "kind", "missing", "failures", "sort"]
TASK_PARAMS = ["status", "product", "version", "priority", "age", "error", "stuck"]
CURSOR_PARAMS = ["after", "before"]
HUGE_PK = "9" * 5000
BIG_PK = str(2**63)  # one past PostgreSQL's bigint


@pytest.fixture
def world(products, operator):
    items, tasks = add_items(4)
    series = add_series(seasons=1, episodes=2)
    operation = Operation.objects.create(
        kind=OperationKind.REFRESH,
        params={"product": "adbreaks", "version": "1.0.1", "priority": "low"},
        reason="test",
        state=OperationState.FAILED,
        created_by=operator,
        total=1,
    )
    return {"item": items[0], "task": tasks[2], "done": tasks[0], "series": series, "operation": operation}


@pytest.fixture
def vionlabs(settings):
    """Vionlabs answers every call with a pending task (the actions' answers do not matter here)."""
    settings.VIONLABS_API_URL = "http://vionlabs.test"
    settings.VIONLABS_API_KEY = "fuzz-key"
    settings.VIONLABS_MAX_RETRIES = 0
    body = {"status": "pending", "error": None, "_links": {}}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for method in ("GET", "POST", "DELETE"):
            mock.add(method, re.compile(r"http://vionlabs\.test/.*"), json=body)
        yield mock


def _probe(client: Client, method: str, path: str, query: str, headers: dict[str, str]) -> str | None:
    """None if the answer is fine, else what went wrong."""
    try:
        if method == "GET":
            response = client.get(f"{path}?{query}", headers=headers)
        else:
            response = client.post(
                path, data=query, content_type="application/x-www-form-urlencoded", headers=headers
            )
    except Exception as error:
        return f"{type(error).__name__}: {str(error)[:120]}"
    if response.status_code >= 500:
        return f"HTTP {response.status_code}"
    return None


def _failures(client, method, path, params, values, *, base="", headers=None):
    failures = []
    for name in params:
        for value in values:
            query = f"{base}&{name}={value}" if base else f"{name}={value}"
            problem = _probe(client, method, path, query, headers or {})
            if problem:
                failures.append(f"{method} {path} {name}={value[:40]!r}: {problem}")
    return failures


def _views(world):
    """(method, path, params, values, fixed query, headers) for every view that reads parameters."""
    item, task, series, op = world["item"], world["task"], world["series"], world["operation"]
    htmx = {"HX-Request": "true"}
    form_target = {**htmx, "HX-Target": f"create-form-{item.pk}"}
    preview = "kind=refresh&product=adbreaks&version=1.0.1&priority=low&items=" + str(item.pk)
    confirm = preview + "&reason=why&expected_count=1&max_item_id=" + str(item.pk)
    choices = ["kind", "product", "version", "priority"]
    admin = "/admin/catalog/"
    result = f"/tasks/{world['done'].pk}/result/"
    minutes = ["minimum_separation", "maximum_separation", "skip_first", "skip_last"]
    return [
        ("GET", "/", ["x"], TEXT, "", {}),
        ("GET", "/items/", CATALOG_PARAMS, TEXT, "", {}),
        ("GET", "/items/", CURSOR_PARAMS, CURSOR_VALUES, "", {}),
        ("GET", "/items/", CURSOR_PARAMS, CURSOR_VALUES, "sort=title", {}),
        ("GET", "/items/", ["q"], TEXT, "", {**htmx, "HX-Target": "item-results"}),
        ("GET", f"/items/{item.pk}/", ["product"], TEXT, "", form_target),
        ("GET", f"/items/{series.pk}/children/", ["depth"], NASTY, "", {}),
        ("GET", "/tasks/", TASK_PARAMS, TEXT, "", {}),
        ("GET", "/tasks/", CURSOR_PARAMS, CURSOR_VALUES, "", {}),
        ("GET", "/poll/", ["since", "items", "tasks", "rows"], NASTY, "", {}),
        ("GET", "/operations/", ["page"], NASTY, "", {}),
        ("GET", f"/operations/{op.pk}/", ["x"], TEXT, "", {}),
        ("GET", f"/operations/{op.pk}/progress/", ["x"], TEXT, "", {}),
        ("POST", f"/items/{item.pk}/tasks/", ["product", "version", "priority"], TEXT, "", htmx),
        ("POST", f"/items/{item.pk}/refresh/", ["fragment"], TEXT, "fragment=item-row", htmx),
        ("POST", f"/items/{item.pk}/refresh/", ["depth"], NASTY, "fragment=item-row", htmx),
        ("POST", f"/tasks/{task.pk}/refresh/", ["fragment"], TEXT, "", htmx),
        ("POST", f"/tasks/{task.pk}/retry/", ["fragment"], TEXT, "", htmx),
        ("POST", f"/tasks/{task.pk}/deactivate/", ["fragment"], TEXT, "", htmx),
        ("POST", "/operations/preview/", choices, TEXT, "", {}),
        ("POST", "/operations/preview/", ["items"], NASTY, "", {}),
        ("POST", "/operations/preview/", ["filter"], TEXT, "", {}),
        ("POST", "/operations/preview/", ["reason"], TEXT, preview, {}),
        ("POST", "/operations/", choices, TEXT, "", {}),
        ("POST", "/operations/", ["items", "expected_count", "max_item_id"], NASTY, confirm, {}),
        ("POST", "/operations/", ["reason", "version"], TEXT, confirm, {}),
        ("POST", "/operations/", ["filter"], [quote(f"q={v}") for v in TEXT], confirm, {}),
        ("POST", f"/operations/{op.pk}/retry-failures/", ["reason"], TEXT, "", {}),
        ("POST", f"/operations/{op.pk}/cancel/", ["x"], TEXT, "", {}),
        ("GET", result, minutes, NASTY, "", htmx),
        ("POST", f"{result}refresh/", minutes, NASTY, "", htmx),
        ("GET", f"{admin}catalogitem/", ["q", "o", "kind__exact"], TEXT, "", {}),
        ("GET", f"{admin}catalogitem/", ["p", "parent"], NASTY, "", {}),
        ("GET", f"{admin}producttask/", ["q", "o", "status"], TEXT, "", {}),
        ("GET", f"{admin}producttask/", ["p"], NASTY, "", {}),
        ("GET", f"{admin}operation/", ["q", "p"], TEXT, "", {}),
    ]


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_no_parameter_of_any_view_gives_a_500(client, world, vionlabs, role, request, operator):
    user = request.getfixturevalue(role)
    if role == "operator":
        user.is_staff = True
        user.is_superuser = True  # reaches the admin's views too
        user.save()
    client.force_login(user)
    client.raise_request_exception = True
    failures = []
    for method, path, params, values, base, headers in _views(world):
        if role == "viewer":
            values = [value for value in values if value in SHARPEST]
        failures += _failures(client, method, path, params, values, base=base, headers=headers)
    assert not failures, f"{len(failures)} answers were 500s:\n" + "\n".join(failures[:60])


@pytest.mark.parametrize("pk", [HUGE_PK, BIG_PK, "0"])
def test_huge_ids_in_paths_give_404_never_500(client, world, vionlabs, operator, pk):
    operator.is_staff = operator.is_superuser = True
    operator.save()
    client.force_login(operator)
    gets = [
        f"/items/{pk}/",
        f"/items/{pk}/children/",
        f"/operations/{pk}/",
        f"/operations/{pk}/progress/",
        f"/tasks/{pk}/result/",
        f"/admin/catalog/catalogitem/{pk}/change/",
        f"/admin/catalog/producttask/{pk}/change/",
        f"/admin/catalog/operation/{pk}/change/",
    ]
    posts = [
        f"/items/{pk}/tasks/",
        f"/items/{pk}/refresh/",
        f"/tasks/{pk}/refresh/",
        f"/tasks/{pk}/deactivate/",
        f"/tasks/{pk}/retry/",
        f"/tasks/{pk}/result/refresh/",
        f"/operations/{pk}/cancel/",
        f"/operations/{pk}/retry-failures/",
    ]
    failures = [f"GET {p}: {e}" for p in gets if (e := _probe(client, "GET", p, "", {}))]
    failures += [f"POST {p}: {e}" for p in posts if (e := _probe(client, "POST", p, "", {}))]
    for path in gets:
        assert client.get(path).status_code in (302, 404), path
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "query",
    [
        "sort=title&after=" + _cursor([None, 1]),
        "after=" + _cursor(["abc", 1]),
        "before=" + _cursor([[1], 1]),
    ],
)
def test_the_reported_bad_cursors_show_the_list_without_them(viewer_client, world, query):
    path = "/items/" if query.startswith("sort") else "/tasks/"
    response = viewer_client.get(f"{path}?{query}")
    assert response.status_code == 200
    assert "This page link is damaged" in response.content.decode()


@pytest.mark.parametrize("param", ["items", "tasks"])
def test_a_superscript_digit_in_a_poll_is_ignored(viewer_client, world, param):
    response = viewer_client.get(f"/poll/?{param}=%C2%B2,{world['item'].pk}")
    assert response.status_code == 200


def test_a_superscript_depth_is_depth_zero(viewer_client, world):
    response = viewer_client.get(f"/items/{world['series'].pk}/children/?depth=%C2%B2")
    assert response.status_code == 200


@pytest.mark.parametrize(
    "field", ["inventory_id", "product", "version", "timestamp", "type"], ids=lambda f: f"field={f}"
)
@pytest.mark.parametrize(
    "bad", ["a\x00b", "\ud800", "a\udfffb"], ids=["nul", "high-surrogate", "low-surrogate"]
)
def test_webhook_fields_with_nul_or_a_lone_surrogate_are_refused_or_stored_never_500(
    client, settings, world, field, bad
):
    settings.VIONLABS_WEBHOOK_SECRET = "hook-secret"
    payload = {
        "inventory_id": world["item"].inventory_id,
        "product": "adbreaks",
        "version": "1.0.1",
        "timestamp": "2026-01-01T00:00:00Z",
        "type": "task.done",
        field: bad,
    }
    # json.dumps escapes the surrogate as \ud800, exactly as a hostile sender would write it.
    body = json.dumps(payload)
    client.raise_request_exception = True
    response = client.post(
        "/webhooks/vionlabs/",
        data=body,
        content_type="application/json",
        headers={"x-api-key": "hook-secret"},
    )
    assert response.status_code in (202, 400)


def test_no_parameter_of_the_login_and_probe_views_gives_a_500(client, world):
    client.raise_request_exception = True
    failures = _failures(
        client, "POST", "/login/", ["username", "password"], TEXT, base="username=u&password=p"
    )
    failures += _failures(client, "GET", "/login/", ["next"], TEXT)
    failures += _failures(client, "POST", "/admin/login/", ["username", "password"], TEXT, base="username=u")
    for path in ("/healthz", "/readyz", "/metrics", "/logout/"):
        failures += _failures(client, "GET", path, ["x"], TEXT)
    assert not failures, "\n".join(failures)


def test_no_selection_of_an_admin_action_gives_a_500(client, world, vionlabs, operator):
    operator.is_staff = operator.is_superuser = True
    operator.save()
    client.force_login(operator)
    client.raise_request_exception = True
    failures = []
    for path, action in [
        ("/admin/catalog/catalogitem/", "refresh_items"),
        ("/admin/catalog/catalogitem/", "start_bulk_operation"),
        ("/admin/catalog/producttask/", "refresh_tasks"),
    ]:
        failures += _failures(
            client, "POST", path, ["_selected_action"], NASTY, base=f"action={action}&index=0"
        )
    assert not failures, "\n".join(failures)
