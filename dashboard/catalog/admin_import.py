"""The catalog upload page in Django admin (Catalog items → Import file): the same importer as the command.

The size limit (settings.IMPORT_MAX_UPLOAD_BYTES) is enforced while the upload is received, by an upload
handler that stops reading past the limit, so an oversized file never lands on disk in full. That handler
must be installed before anything reads request.POST, which the CSRF middleware would do: the view is
therefore csrf_exempt on the outside and csrf_protect on the inside (the pattern Django documents for
changing upload handlers on the fly).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from .imports import FORMATS, ImportFileError, import_catalog_file
from .models import CatalogItem

logger = logging.getLogger(__name__)

#: Bad rows listed on the report page (all are counted).
REPORT_MAX_ERRORS = 1000
PERMISSION = "catalog.add_catalogitem"


class _SizeLimitHandler(FileUploadHandler):
    """Stops the upload as soon as one file passes the limit; the rest of the request is read and dropped."""

    def __init__(self, limit: int, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit = limit
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if start + len(raw_data) > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


class CatalogUploadForm(forms.Form):
    file = forms.FileField(help_text="CSV (UTF-8, with or without BOM) or JSON Lines (.jsonl, .ndjson).")
    format = forms.ChoiceField(
        choices=[
            ("", "From the file name"),
            *((f, f.upper() if f == "csv" else "JSON Lines") for f in FORMATS),
        ],
        required=False,
    )


def catalog_import_view_for(model_admin: admin.ModelAdmin) -> Callable[..., HttpResponse]:
    """The view for CatalogItemAdmin.get_urls (wrap it in admin_site.admin_view)."""

    @csrf_exempt
    def view(request: HttpRequest) -> HttpResponse:
        limit = int(settings.IMPORT_MAX_UPLOAD_BYTES)
        handler = _SizeLimitHandler(limit, request)
        request.upload_handlers.insert(0, handler)
        return _protected(request, model_admin=model_admin, limit=limit, handler=handler)

    return view


@csrf_protect
def _protected(
    request: HttpRequest, *, model_admin: admin.ModelAdmin, limit: int, handler: _SizeLimitHandler
) -> HttpResponse:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "opts": CatalogItem._meta,
        "title": "Import catalog items",
        "limit": limit,
    }
    if request.method != "POST":
        return render(
            request, "admin/catalog/catalogitem/import_form.html", {**context, "form": CatalogUploadForm()}
        )
    form = CatalogUploadForm(request.POST, request.FILES)
    if handler.exceeded:
        # Checked first: the form would only say "no file", the truth is that it was too large.
        form = CatalogUploadForm(initial={"format": request.POST.get("format", "")})
        context["upload_error"] = f"The file is larger than the upload limit of {filesizeformat(limit)}."
    elif form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            report = import_catalog_file(
                upload,
                fmt=form.cleaned_data["format"] or None,
                name=upload.name,
                max_errors=REPORT_MAX_ERRORS,
            )
        except ImportFileError as exc:
            context["upload_error"] = f"{upload.name}: {exc} Nothing was imported."
        else:
            logger.info("catalog upload %r by %s: %s", upload.name, request.user, report.summary())
            return render(
                request,
                "admin/catalog/catalogitem/import_report.html",
                {**context, "title": "Catalog import report", "report": report, "file_name": upload.name},
            )
    return render(
        request, "admin/catalog/catalogitem/import_form.html", {**context, "form": form}, status=400
    )
