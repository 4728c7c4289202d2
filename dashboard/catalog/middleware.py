"""An htmx request whose session has expired gets a whole-page redirect to the login page.

Without this, LoginRequiredMiddleware's 302 would be followed by htmx and the login form swapped into
whatever fragment asked, which is nonsense to the person looking at the page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django_htmx.http import HttpResponseClientRedirect

from .client import interactive_calls
from .views.common import HtmxHttpRequest


class HtmxLoginRedirectMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HtmxHttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        # Runs before LoginRequiredMiddleware.process_view (middleware order), so it sees the request first.
        if not getattr(request, "htmx", False) or request.user.is_authenticated:
            return None
        if not getattr(view_func, "login_required", True):
            return None
        login = redirect_to_login(request.htmx.current_url_abs_path or request.get_full_path())
        return HttpResponseClientRedirect(login["Location"])


class InteractiveVionlabsMiddleware:
    """Vionlabs calls made while answering a web request fail fast (see client.interactive_calls): a view
    never sleeps through a long Retry-After while the operator stares at a spinner."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with interactive_calls():
            return self.get_response(request)


class NullQueryMiddleware:
    """A query string holding a NUL character is answered 400. No parameter of this site may hold one, and
    PostgreSQL refuses it in text, so a filter passed on to a query (the admin's list filters pass theirs
    as given) would fail with a 500 instead."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                return HttpResponseBadRequest(
                    "A parameter of this address holds a null character.", content_type="text/plain"
                )
        return self.get_response(request)
