"""Settings for the test suite: the production settings, with the few differences a test run needs."""

from __future__ import annotations

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")
os.environ.setdefault("SECURE_HSTS_SECONDS", "0")
# The tests start the sandbox (`run_sandbox` included), which production leaves out.
os.environ.setdefault("SANDBOX", "true")

from dashboard.settings import *  # noqa: F403

ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
# Hashing passwords slowly protects stored passwords, not test users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# No collectstatic before a test run: the plain storage needs no manifest, and WhiteNoise looks files up per
# request instead of warning at start-up that STATIC_ROOT is missing (tests/test_static.py collects its own).
WHITENOISE_AUTOREFRESH = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Threads (bulk operations) and worker processes need a database file they can all open and wait on: an
# in-memory SQLite test database is shared-cache, which answers "database table is locked" at once instead
# of honouring the busy timeout. One file per test process, so parallel runs never share it.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    import tempfile

    DATABASES["default"].setdefault("TEST", {}).setdefault(  # noqa: F405
        "NAME", os.path.join(tempfile.gettempdir(), f"dashboard-test-{os.getpid()}.sqlite3")
    )
