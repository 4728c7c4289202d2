"""Brute-force protection of /login/ and /admin/login/: locked by username and address together, for a cool-off,
with a clear page (never a 500), lifted by the cool-off, reset by a successful log-in."""

from __future__ import annotations

import datetime as dt

import pytest
from axes.models import AccessAttempt
from django.test import Client, RequestFactory

from dashboard.login_guard import client_ip

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
ALICE_IP = "198.51.100.7"
OTHER_IP = "203.0.113.9"


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password=PASSWORD, is_staff=True, is_superuser=True)


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password=PASSWORD)


def attempt(username: str, password: str, *, ip: str, url: str = "/login/"):
    return Client(REMOTE_ADDR=ip).post(url, {"username": username, "password": password})


def logged_in(response) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.client.session


def hammer(username: str, *, ip: str, times: int = 12, url: str = "/login/") -> None:
    # 12: past the default limit of 10; the headline test sends the 30 of the report.
    for _ in range(times):
        response = attempt(username, "wrong", ip=ip, url=url)
        assert response.status_code in (200, 429)  # the form again, or the lockout page: never a 500


def test_thirty_wrong_passwords_lock_that_username_from_that_address(alice):
    hammer("alice", ip=ALICE_IP, times=30)

    response = attempt("alice", PASSWORD, ip=ALICE_IP)

    assert response.status_code == 429
    assert not logged_in(response)
    html = response.content.decode()
    assert "Log-in locked for now" in html
    assert "15 minutes" in html
    assert '<link rel="stylesheet"' in html  # the site's own page (base.html), not a bare text answer
    assert "<script>" not in html  # nothing inline for the CSP to refuse


def test_the_lock_starts_at_the_configured_failure_limit(alice, settings):
    hammer("alice", ip=ALICE_IP, times=settings.AXES_FAILURE_LIMIT - 1)
    assert logged_in(attempt("alice", PASSWORD, ip=ALICE_IP))


def test_the_same_username_from_another_address_still_logs_in(alice):
    hammer("alice", ip=ALICE_IP)
    assert logged_in(attempt("alice", PASSWORD, ip=OTHER_IP))


def test_another_username_from_the_same_address_still_logs_in(alice, bob):
    hammer("alice", ip=ALICE_IP)
    assert logged_in(attempt("bob", PASSWORD, ip=ALICE_IP))


def test_the_lock_lifts_after_the_cool_off(alice, settings):
    hammer("alice", ip=ALICE_IP)
    assert attempt("alice", PASSWORD, ip=ALICE_IP).status_code == 429
    # The attempts as the database holds them, moved back past the cool-off (no sleeping, no mocked clock).
    past = dt.timedelta(minutes=1) + settings.AXES_COOLOFF_TIME
    for row in AccessAttempt.objects.all():
        AccessAttempt.objects.filter(pk=row.pk).update(attempt_time=row.attempt_time - past)

    assert logged_in(attempt("alice", PASSWORD, ip=ALICE_IP))


def test_a_successful_log_in_resets_the_count(alice, settings):
    almost = settings.AXES_FAILURE_LIMIT - 1
    hammer("alice", ip=ALICE_IP, times=almost)
    assert logged_in(attempt("alice", PASSWORD, ip=ALICE_IP))
    hammer("alice", ip=ALICE_IP, times=almost)
    assert logged_in(attempt("alice", PASSWORD, ip=ALICE_IP))


def test_the_admin_log_in_is_protected_too(alice):
    hammer("alice", ip=ALICE_IP, url="/admin/login/")

    response = attempt("alice", PASSWORD, ip=ALICE_IP, url="/admin/login/")

    assert response.status_code == 429
    assert "Log-in locked for now" in response.content.decode()
    assert not logged_in(response)
    # Failures count across both forms: the dashboard's form is locked for alice from there as well.
    assert attempt("alice", PASSWORD, ip=ALICE_IP).status_code == 429
    assert logged_in(attempt("alice", PASSWORD, ip=OTHER_IP, url="/admin/login/"))


def test_a_locked_out_user_with_a_session_is_not_thrown_out(alice, client):
    client.force_login(alice)
    hammer("alice", ip="127.0.0.1")
    assert client.get("/").status_code == 200


@pytest.mark.parametrize(
    ("proxies", "forwarded", "remote", "expected"),
    [
        (0, "1.2.3.4", "10.0.0.5", "10.0.0.5"),  # no proxy configured: the header is the client's own text
        (1, "1.2.3.4", "10.0.0.5", "1.2.3.4"),
        (1, "6.6.6.6, 1.2.3.4", "10.0.0.5", "1.2.3.4"),  # a forged entry on the left is ignored
        (2, "6.6.6.6, 1.2.3.4, 10.0.0.9", "10.0.0.5", "1.2.3.4"),
        (2, "1.2.3.4", "10.0.0.5", "10.0.0.5"),  # fewer hops than proxies: not via them, use the peer
        (1, "not-an-ip", "10.0.0.5", "10.0.0.5"),
        (1, "", "10.0.0.5", "10.0.0.5"),
    ],
)
def test_the_client_address_comes_from_the_trusted_proxies_only(
    settings, proxies, forwarded, remote, expected
):
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


def test_behind_a_proxy_each_client_is_counted_apart(alice, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.5"
    for _ in range(12):
        Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=ALICE_IP).post(
            "/login/", {"username": "alice", "password": "wrong"}
        )
    locked = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=ALICE_IP)
    assert locked.post("/login/", {"username": "alice", "password": PASSWORD}).status_code == 429
    other = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=OTHER_IP)
    response = other.post("/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
