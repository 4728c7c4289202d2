"""Brute-force protection of the log-in forms (/login/ and /admin/login/), on top of django-axes.

Failed attempts are counted per username *and* client address together (AXES_LOCKOUT_PARAMETERS in the
settings): an attacker guessing one account from one address is locked out for LOGIN_COOLOFF_MINUTES, while
the same person from another address, or a colleague behind the same office NAT, still logs in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def _valid_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """The address a log-in attempt counts against (AXES_CLIENT_IP_CALLABLE).

    REMOTE_ADDR, unless TRUSTED_PROXY_COUNT reverse proxies stand in front of the app: then the address the
    outermost of them saw, i.e. the TRUSTED_PROXY_COUNT-th entry of X-Forwarded-For counted from the right.
    Entries further left are written by the client and are never trusted (anyone can send the header).
    """
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies > 0:
        hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if len(hops) >= proxies and (address := _valid_ip(hops[-proxies])):
            return address
    return _valid_ip(remote) or remote or None


#: `axes.AccessAttempt.username` is a varchar(255): a longer name would fail the write on PostgreSQL.
ATTEMPT_USERNAME_MAX_LENGTH = 255


def attempt_username(request: HttpRequest, credentials: Mapping[str, Any] | None) -> str:
    """The username a log-in attempt counts against (AXES_USERNAME_CALLABLE): as typed, but without NUL and cut
    to what the attempts table holds, so a hostile username is a failed log-in, never a database error. No
    real username is that long (Django's are at most 150 characters), so the cut merges no two accounts."""
    value = (credentials or {}).get("username")
    if value is None:
        value = request.POST.get("username", "")
    return str(value).replace("\x00", "")[:ATTEMPT_USERNAME_MAX_LENGTH]


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: Mapping[str, Any] | None
) -> HttpResponse:
    """The page shown instead of the log-in form while a username is locked out from this address (429)."""
    minutes = max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    return render(
        request,
        "registration/locked_out.html",
        {"cooloff_minutes": minutes, "failure_limit": settings.AXES_FAILURE_LIMIT},
        status=429,
    )
