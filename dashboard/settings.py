"""Settings, all read from the environment (and an optional `.env` beside manage.py).

Every variable is listed with its default in the README. Nothing here reads a setting at import time of
another module: code asks `django.conf.settings` when it runs.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

# A development key only while DEBUG is on; a production process refuses to start without a real one.
_DEV_SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment (or .env), or set DEBUG=true for development."
        )
    SECRET_KEY = _DEV_SECRET_KEY

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_tasks_db",
    "axes",
    "dashboard.catalog",
]
#: The local stand-in for Vionlabs is an app (for `manage.py run_sandbox`) only where it is used: in
#: development, in the tests, or with SANDBOX=true. A production process does not carry it.
SANDBOX = env.bool("SANDBOX", default=DEBUG)
if SANDBOX:
    INSTALLED_APPS.append("dashboard.sandbox")

MIDDLEWARE = [
    # First, so every response (redirects and probes included) carries X-Request-ID and every log line the id.
    "dashboard.logs.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Answers /healthz, /readyz and /metrics before CommonMiddleware validates the Host header: load balancers
    # and Prometheus probe by IP (see docs/deploy.md).
    "dashboard.health.ProbeMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Before anything reads a parameter: a NUL in the query string is a 400, never a query PostgreSQL refuses.
    "dashboard.catalog.middleware.NullQueryMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "dashboard.catalog.middleware.HtmxLoginRedirectMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "dashboard.catalog.middleware.InteractiveVionlabsMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out log-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# --- Log-in brute-force protection (django-axes; see dashboard/login_guard.py) ---------------------------
# Its backend comes first: it refuses a locked-out username+address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
# Username and address together: nobody can lock a colleague out from elsewhere, nor a shared NAT address.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "dashboard.login_guard.client_ip"
AXES_USERNAME_CALLABLE = "dashboard.login_guard.attempt_username"
AXES_LOCKOUT_CALLABLE = "dashboard.login_guard.lockout_response"
# Axes announces itself at INFO in every process that starts (web, worker, scheduler, each command):
# noise in a terminal and in the logs. Lockouts are still logged as warnings.
AXES_VERBOSE = False
# Reverse proxies in front of the app that append to X-Forwarded-For (0: clients connect directly, and the
# header is ignored). Too high a number lets clients choose their address; too low counts the proxy's.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"
ASGI_APPLICATION = "dashboard.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------------
# SQLite (the default, for `make run` and the first test pass) runs in WAL mode with a busy timeout and
# IMMEDIATE transactions, so that the web server, the worker and the scheduler can share one file.
# PostgreSQL is the production database: DATABASE_URL=postgres://user@host:5432/name.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    # The planner's cost of a random page read. PostgreSQL's default (4) is for spinning disks: with it, a
    # task page filtered by a status read the primary key backwards and dropped 100,000 rows of other
    # statuses (19 ms at 1.5 M tasks) instead of walking (status, id) (3 ms). 1.1 suits SSDs and a cached
    # working set, what any current host has. Empty leaves the server's setting (e.g. behind a pooler that
    # refuses startup options, or where the DBA sets it); docs/deploy.md.
    if _page_cost := env.str("DATABASE_RANDOM_PAGE_COST", default="1.1"):
        _options = DATABASES["default"].setdefault("OPTIONS", {})
        _options["options"] = f"{_options.get('options', '')} -c random_page_cost={float(_page_cost)}".strip()
# Lets several test runs share one PostgreSQL server without trampling each other's test database.
if _test_db_name := env.str("TEST_DATABASE_NAME", default=""):
    DATABASES["default"]["TEST"] = {"NAME": _test_db_name}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth ---------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "catalog:overview"
LOGOUT_REDIRECT_URL = "login"

# --- Internationalisation -----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files (served by the project: no CDN, no build step) ----------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
# WhiteNoise serves STATIC_ROOT (filled by `collectstatic`) with DEBUG off: gzip and brotli copies, and
# names carrying a content hash, cached for a year. The tests use the plain storage (no manifest needed).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Security ------------------------------------------------------------------------------------------
# A strict Content-Security-Policy: no inline script or style, no eval, nothing from other origins.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}
# Error pages and e-mails blank any traceback variable holding the Vionlabs key (URLs inside `requests`).
DEFAULT_EXCEPTION_REPORTER_FILTER = "dashboard.error_reports.KeyRedactingExceptionReporterFilter"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
# The header only consents to preloading (check --deploy asks for it); getting onto the browsers' list is a
# separate, deliberate submission. SECURE_HSTS_PRELOAD=false for a domain that must be able to drop HTTPS.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
if env.bool("USE_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Load balancers and Prometheus probe over plain HTTP: the probes never redirect, in every profile.
SECURE_REDIRECT_EXEMPT = [r"^(healthz|readyz|metrics)/?$"]

# --- Operations: metrics ----------------------------------------------------------------------------------
# /metrics answers a request from an allowed address (IPs or networks, REMOTE_ADDR) or bearing
# `Authorization: Bearer <METRICS_TOKEN>`; with neither set it answers nobody.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=[])

# --- Operations: alerts -----------------------------------------------------------------------------------
# The scheduler sends a digest of new failures and newly stuck tasks (dashboard/catalog/alerts.py) by e-mail to
# ALERT_EMAILS and/or as JSON (Slack-compatible `text`) to ALERT_WEBHOOK_URL, at most every ALERT_INTERVAL
# seconds. Links in it start with SITE_URL. Mail goes through Django's default mailer (EMAIL_* variables).
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
ALERT_WEBHOOK_TIMEOUT = env.float("ALERT_WEBHOOK_TIMEOUT", default=10.0)
ALERT_INTERVAL = env.int("ALERT_INTERVAL", default=15 * 60)
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
_EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
# The SMTP options only for the SMTP backend: the others (console, locmem, file) refuse unknown options.
_SMTP_OPTIONS = {
    "host": env.str("EMAIL_HOST", default="localhost"),
    "port": env.int("EMAIL_PORT", default=25),
    "username": env.str("EMAIL_HOST_USER", default=""),
    "password": env.str("EMAIL_HOST_PASSWORD", default=""),
    "use_tls": env.bool("EMAIL_USE_TLS", default=False),
    "timeout": env.int("EMAIL_TIMEOUT", default=10),
}
MAILERS = {
    "default": {
        "BACKEND": _EMAIL_BACKEND,
        "OPTIONS": _SMTP_OPTIONS if _EMAIL_BACKEND.endswith("smtp.EmailBackend") else {},
    }
}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="dashboard@localhost")

# --- Background work (django.tasks) -------------------------------------------------------------------
# django-tasks-db keeps the queue in the same database; its worker is `manage.py db_worker`. Moving to
# another backend is a change here only: code uses nothing but the django.tasks API.
TASKS = {
    "default": {
        "BACKEND": env.str("TASKS_BACKEND", default="django_tasks_db.DatabaseBackend"),
        "QUEUES": ["default"],
    }
}

# --- Vionlabs -------------------------------------------------------------------------------------------
# The defaults point at the local sandbox (`manage.py run_sandbox --port 8001`), which accepts this key.
SANDBOX_API_KEY = "sandbox-key"  # the local stand-in's key, not a secret
VIONLABS_API_URL = env.str("VIONLABS_API_URL", default="http://127.0.0.1:8001")
VIONLABS_API_KEY = env.str("VIONLABS_API_KEY", default=SANDBOX_API_KEY)
VIONLABS_TIMEOUT = env.float("VIONLABS_TIMEOUT", default=10.0)
VIONLABS_MAX_RETRIES = env.int("VIONLABS_MAX_RETRIES", default=3)
# Seconds one click (create, retry, deactivate, refresh) may spend on Vionlabs in all, its settling reads
# included: well under a web worker's timeout (GUNICORN_TIMEOUT, gunicorn's default 30 s).
REQUEST_ACTION_BUDGET = env.float("REQUEST_ACTION_BUDGET", default=8.0)
# Shared secret Vionlabs sends in the `x-api-key` header of its webhook calls; empty disables the endpoint.
VIONLABS_WEBHOOK_SECRET = env.str("VIONLABS_WEBHOOK_SECRET", default="")

# --- Dashboard ------------------------------------------------------------------------------------------
DASHBOARD_POLL_INTERVAL = env.int("DASHBOARD_POLL_INTERVAL", default=5)
# A page with nothing in flight keeps asking, slowly, so others' changes still show up.
DASHBOARD_IDLE_POLL_INTERVAL = env.int("DASHBOARD_IDLE_POLL_INTERVAL", default=30)
DASHBOARD_PAGE_SIZE = env.int("DASHBOARD_PAGE_SIZE", default=50)
BULK_CONCURRENCY = env.int("BULK_CONCURRENCY", default=4)
# Runner jobs one bulk operation fans out to (each worker process takes one and claims chunks of ~200 items;
# extra jobs find nothing left and end). A runner holds a chunk by a lease of OPERATION_LEASE_SECONDS that it
# renews twice a second, also while it waits out a 429; a lease that runs out lets another runner take over.
BULK_FANOUT = env.int("BULK_FANOUT", default=4)
OPERATION_LEASE_SECONDS = env.float("OPERATION_LEASE_SECONDS", default=120.0)
SYNC_REQUESTS_PER_MINUTE = env.int("SYNC_REQUESTS_PER_MINUTE", default=600)
# Scheduled sync (dashboard/catalog/sync.py): a task in flight is checked again after a tenth of its age,
# between these bounds; a claimed item is leased for SYNC_LEASE_SECONDS; after SYNC_BREAKER_THRESHOLD
# failures in a row sync pauses for SYNC_BREAKER_PAUSE seconds, then sends one probe.
SYNC_MIN_INTERVAL = env.float("SYNC_MIN_INTERVAL", default=30.0)
SYNC_MAX_INTERVAL = env.float("SYNC_MAX_INTERVAL", default=900.0)
SYNC_LEASE_SECONDS = env.float("SYNC_LEASE_SECONDS", default=600.0)
SYNC_BREAKER_THRESHOLD = env.int("SYNC_BREAKER_THRESHOLD", default=5)
SYNC_BREAKER_PAUSE = env.float("SYNC_BREAKER_PAUSE", default=60.0)
# A running bulk operation with no item finished for this long lost its worker: the scheduler resumes it.
# Keep it well above the longest wait one item can take (timeouts, retries, Retry-After).
OPERATION_STALE_AFTER = env.float("OPERATION_STALE_AFTER", default=600.0)
IMPORT_MAX_UPLOAD_BYTES = env.int("IMPORT_MAX_UPLOAD_BYTES", default=50 * 1024 * 1024)

# --- Logging --------------------------------------------------------------------------------------------
# urllib3 logs full URLs (with the `key` query parameter) at DEBUG; it is held at WARNING here, and the
# client never lets a URL into its own messages.
# LOG_FORMAT=json writes one JSON object per line (dashboard/logs.py); both formats carry the request id
# and pass through the key redaction.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "dashboard.logs.ContextFilter"},
        "redact": {"()": "dashboard.logs.RedactKeyFilter"},
        "job_lines": {"()": "dashboard.logs.JobLineFilter"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"},
        "json": {"()": "dashboard.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context", "redact"],
        },
        # Django's own, kept (it is a no-op without ADMINS).
        "mail_admins": {
            "level": "ERROR",
            "filters": ["require_debug_false"],
            "class": "django.utils.log.AdminEmailHandler",
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's default config gives "django" a second console handler (with DEBUG on) on top of the
        # root's: every Django and job line came out twice under `make run`. One handler: the root's.
        "django": {"handlers": ["mail_admins"], "level": "INFO"},
        "urllib3": {"level": "WARNING"},
        "django.server": {"level": "INFO"},
        # One line per job outcome; job starts and per-item jobs only with LOG_LEVEL=DEBUG (dashboard/logs.py).
        "django.tasks": {"filters": ["job_lines"]},
    },
}
