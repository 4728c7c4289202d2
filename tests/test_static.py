"""With DEBUG off, WhiteNoise serves the collected static files: hashed names, compressed, cached for a year."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.templatetags.static import static
from django.test import Client, override_settings

MANIFEST_STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}


@pytest.fixture(scope="module")
def static_root(tmp_path_factory):
    """collectstatic once for the module (compressing every file takes a while)."""
    root = tmp_path_factory.mktemp("static")
    with override_settings(STATIC_ROOT=root, STORAGES=MANIFEST_STORAGES):
        call_command("collectstatic", "--no-input", verbosity=0)
    return root


@pytest.fixture
def collected(settings, static_root):
    settings.DEBUG = False
    settings.STATIC_ROOT = static_root
    settings.STORAGES = MANIFEST_STORAGES
    settings.WHITENOISE_AUTOREFRESH = False
    return Client()  # a new handler, so WhiteNoise reads the new STATIC_ROOT


def test_css_has_a_hashed_name(collected):
    url = static("css/dashboard.css")
    assert url != "/static/css/dashboard.css"
    assert url.startswith("/static/css/dashboard.")
    assert url.endswith(".css")


@pytest.mark.parametrize("encoding", ["br", "gzip"])
def test_css_is_served_compressed_with_a_long_cache(collected, encoding):
    response = collected.get(static("css/dashboard.css"), headers={"Accept-Encoding": encoding})
    assert response.status_code == 200
    assert response["Content-Encoding"] == encoding
    assert response["Content-Type"].startswith("text/css")
    assert "immutable" in response["Cache-Control"]
    assert "max-age=315360000" in response["Cache-Control"]


def test_a_client_without_compression_gets_the_plain_file(collected):
    response = collected.get(static("css/dashboard.css"), headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert "Content-Encoding" not in response
    assert b"{" in b"".join(response.streaming_content)
