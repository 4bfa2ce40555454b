"""RFStudio settings, read from the environment.

DATABASE_URL selects the database (default: SQLite in var/ with WAL); DJANGO_DEBUG,
DJANGO_SECRET_KEY and DJANGO_ALLOWED_HOSTS configure the deployment. See README.md.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("RFSTUDIO_VAR_DIR", BASE_DIR / "var"))
# ../shared beside the repository: real product cut-outs and prompts (optional).
SHARED_DIR = Path(os.environ.get("RFSTUDIO_SHARED_DIR", BASE_DIR.parent / "shared"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
INSECURE_DEV_KEY = "rfstudio-insecure-development-key-do-not-use-in-production"
# RFSTUDIO_INSECURE_DEV_KEY=1 lets management commands (collectstatic, check) run without a key;
# the system check core.E001 refuses it outside DEBUG, so runserver, gunicorn and
# `check --deploy` all stop on it.
RFSTUDIO_INSECURE_DEV_KEY = env_bool("RFSTUDIO_INSECURE_DEV_KEY", False)
if not SECRET_KEY:
    if not DEBUG and not RFSTUDIO_INSECURE_DEV_KEY:
        raise ImproperlyConfigured(
            "Set DJANGO_SECRET_KEY (or DJANGO_DEBUG=1 for local development)."
        )
    SECRET_KEY = INSECURE_DEV_KEY

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "core",
    "django_htmx",
    "template_partials",
    "django_tasks",
    "django_tasks_db",
    "jobs",
    "generation",
    "annotation",
    "feedback",
    "ranking",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "core.api.RequestSizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "core.api.ApiProblemMiddleware",
    # Last, as django-axes asks: it answers locked-out logins.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First: refuses logins for a locked-out username/IP before the password is checked.
    "core.auth.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
            ],
        },
    }
]

# --- Database -------------------------------------------------------------------------------
DEFAULT_SQLITE_PATH = VAR_DIR / "rfstudio.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{DEFAULT_SQLITE_PATH}"),
        conn_max_age=int(os.environ.get("DJANGO_CONN_MAX_AGE", "0")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Server-side parameter binding, and statements run RFSTUDIO_PG_PREPARE_THRESHOLD times on a
    # connection are prepared (parsed and planned once): the labeling hot path repeats the same
    # few statements, and parsing/planning them was 1.5 of the 4.9 ms of SQL per next+submit.
    # Bulk look-ups also send their megabyte key lists as parameters instead of quoting them into
    # the SQL text. "off" for a transaction-mode pooler without prepared statement support
    # (PgBouncer < 1.21): client-side binding, Django's default.
    _threshold = os.environ.get("RFSTUDIO_PG_PREPARE_THRESHOLD", "5").strip().lower()
    if _threshold != "off":
        if not _threshold.isdigit():
            raise ImproperlyConfigured(
                f"RFSTUDIO_PG_PREPARE_THRESHOLD must be a number of executions or 'off', "
                f"not {_threshold!r}"
            )
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            server_side_binding=True, prepare_threshold=int(_threshold)
        )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the single writer; IMMEDIATE makes every transaction take the
    # write lock up front, which is what makes the annotation queue's claim race-free on SQLite
    # (see docs/architecture.md, "Concurrency").
    DATABASES["default"]["OPTIONS"] = {
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;"
        ),
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # Tests need a file database so that live servers and workers in other processes share it.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("RFSTUDIO_TEST_SQLITE", str(VAR_DIR / "test-rfstudio.sqlite3"))
    }
    VAR_DIR.mkdir(parents=True, exist_ok=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static and media (Django's storage API) ----------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", VAR_DIR / "static"))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = os.environ.get("DJANGO_MEDIA_URL", "/media/")
MEDIA_ROOT = Path(os.environ.get("DJANGO_MEDIA_ROOT", VAR_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# DJANGO_STORAGE=s3: media (creatives, products, thumbnails, staged imports, job artifacts) on
# S3-compatible object storage through django-storages, so web and GPU workers on other hosts read
# the same files. Browsers never get bucket URLs: images are streamed through /images/... behind
# the login (annotation/views.py), workers read through the storage API (generation/storage.py).
DJANGO_STORAGE = os.environ.get("DJANGO_STORAGE", "filesystem").strip().lower()
if DJANGO_STORAGE == "s3":
    if not os.environ.get("AWS_STORAGE_BUCKET_NAME"):
        raise ImproperlyConfigured("DJANGO_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME.")
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ["AWS_STORAGE_BUCKET_NAME"],
            # MinIO, Ceph, R2, moto, ...: their URL; empty for AWS itself.
            "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
            "location": os.environ.get("AWS_LOCATION", ""),  # key prefix inside the bucket
            "addressing_style": os.environ.get("AWS_S3_ADDRESSING_STYLE") or None,
            # Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment (or an
            # instance role), read by boto3 itself.
            "default_acl": None,  # the bucket stays private
            "querystring_auth": True,  # any URL handed out is signed and expires
            "querystring_expire": int(os.environ.get("AWS_QUERYSTRING_EXPIRE", "3600")),
            # Content-addressed names: an existing key already holds these bytes.
            "file_overwrite": True,
        },
    }
elif DJANGO_STORAGE not in ("filesystem", "local", ""):
    raise ImproperlyConfigured(
        f"DJANGO_STORAGE must be 'filesystem' or 's3', not {DJANGO_STORAGE!r}"
    )
# Roots from which imports may reference images by path (comma separated). The manifest's own
# folder is always allowed for the command line; the API only accepts paths under these roots.
RFSTUDIO_IMPORT_ROOTS = [Path(p) for p in env_list("RFSTUDIO_IMPORT_ROOTS")]
# Where model checkpoints, dataset caches and job artifacts live (through default storage too).
RFSTUDIO_MODELS_DIR = Path(os.environ.get("RFSTUDIO_MODELS_DIR", VAR_DIR / "models"))
RFSTUDIO_CACHE_DIR = Path(os.environ.get("RFSTUDIO_CACHE_DIR", VAR_DIR / "cache"))

# --- Security (manage.py check --deploy passes with DEBUG off) -------------------------------
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
# Preload-list submission is a one-way commitment for the whole domain: opt-in only, so its
# deploy-check reminder is silenced while it is off.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("DJANGO_BEHIND_TLS_PROXY", False) else None
)
X_FRAME_OPTIONS = "DENY"


# --- Limits (README "Limits"): each from the environment ------------------------------------------
def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}")
    if value < 0:
        raise ImproperlyConfigured(f"{name} must not be negative")
    return value


MB = 1024 * 1024
# Request bodies other than file parts (JSON, form fields): 413 above this.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("RFSTUDIO_MAX_BODY_BYTES", 20 * MB)
# File parts above this are spooled to disk instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("RFSTUDIO_FILE_UPLOAD_MEMORY_BYTES", 20 * MB)
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("RFSTUDIO_MAX_UPLOAD_FILES", 10_000)
DATA_UPLOAD_MAX_NUMBER_FIELDS = env_int("RFSTUDIO_MAX_FORM_FIELDS", 10_000)
# Whole request (all files together): core.api.RequestSizeLimitMiddleware answers 413.
RFSTUDIO_MAX_UPLOAD_BYTES = env_int("RFSTUDIO_MAX_UPLOAD_BYTES", 2048 * MB)
RFSTUDIO_MAX_PROMPT_LENGTH = env_int("RFSTUDIO_MAX_PROMPT_LENGTH", 4000)
RFSTUDIO_MAX_TITLE_LENGTH = env_int("RFSTUDIO_MAX_TITLE_LENGTH", 500)
RFSTUDIO_MAX_NOTE_LENGTH = env_int("RFSTUDIO_MAX_NOTE_LENGTH", 2000)
RFSTUDIO_MAX_REASON_LENGTH = env_int("RFSTUDIO_MAX_REASON_LENGTH", 2000)
RFSTUDIO_MAX_PAGE_SIZE = env_int("RFSTUDIO_MAX_PAGE_SIZE", 500)
RFSTUDIO_MAX_OVERLAP = env_int("RFSTUDIO_MAX_OVERLAP", 100)
# Login lockout (django-axes): after AXES_FAILURE_LIMIT failures for one username from one IP,
# that pair is locked for RFSTUDIO_LOCKOUT_MINUTES (the form shows the lockout page, 429).
AXES_ENABLED = env_bool("RFSTUDIO_LOCKOUT", True)
AXES_FAILURE_LIMIT = env_int("RFSTUDIO_LOCKOUT_FAILURES", 10)
AXES_COOLOFF_TIME = env_int("RFSTUDIO_LOCKOUT_MINUTES", 15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_IPWARE_PROXY_COUNT = env_int("RFSTUDIO_PROXY_COUNT", 0) or None
# Throttles (DRF, per user id or per anonymous IP), rates like "120/min"; empty disables.
RFSTUDIO_THROTTLE_USER = os.environ.get("RFSTUDIO_THROTTLE_USER", "6000/min")
RFSTUDIO_THROTTLE_ANON = os.environ.get("RFSTUDIO_THROTTLE_ANON", "60/min")

# --- Tasks (Django Tasks API; django-tasks backport until Django 6) -----------------------------
# RFSTUDIO_TASKS_BACKEND: "db" (default, django-tasks-db), "rq" (Redis via django-tasks-rq, set
# REDIS_URL) or "immediate" (runs in-process; only for debugging).
TASK_QUEUES = ["default", "gpu"]
_tasks_backend = os.environ.get("RFSTUDIO_TASKS_BACKEND", "db")
if _tasks_backend == "db":
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": TASK_QUEUES}}
elif _tasks_backend == "rq":
    INSTALLED_APPS += ["django_rq"]
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": TASK_QUEUES}}
    RQ_QUEUES = {
        name: {
            "URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            # RQ kills jobs after 180 s by default; training runs for hours (jobs have their own
            # heartbeat/sweeper for dead workers).
            "DEFAULT_TIMEOUT": int(os.environ.get("RFSTUDIO_RQ_JOB_TIMEOUT", 7 * 24 * 3600)),
        }
        for name in TASK_QUEUES
    }
elif _tasks_backend == "immediate":
    TASKS = {
        "default": {
            "BACKEND": "django_tasks.backends.immediate.ImmediateBackend",
            "QUEUES": TASK_QUEUES,
        }
    }
else:
    raise ImproperlyConfigured(f"Unknown RFSTUDIO_TASKS_BACKEND {_tasks_backend!r}")

# --- REST framework ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # DRF's TokenAuthentication that also loads the user's roles in the same query. First, so
        # anonymous calls get 401 with WWW-Authenticate everywhere (Session first answers 403).
        "annotation.authentication.RoleAwareTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # core.policy: every API view declares `policy_rule`; one without answers 403.
    "DEFAULT_PERMISSION_CLASSES": ["core.policy.Policy"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "core.api.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    # Rates: RFSTUDIO_THROTTLE_USER / RFSTUDIO_THROTTLE_ANON (read per request).
    "DEFAULT_THROTTLE_CLASSES": ["core.throttling.AnonThrottle", "core.throttling.UserThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "RFStudio API",
    "DESCRIPTION": "Annotation, feedback models and jobs for reliable ad image generation.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from our static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # <id:...> (core.converters): a non-negative integer no larger than a 64-bit id.
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1, "format": "int64"}
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api.postprocess_problem_responses",
    ],
    # Several models have a `status` field; name each choice set instead of hashing names.
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "jobs.models.JobStatus",
        "FeedbackModelStatusEnum": "feedback.models.FeedbackModel.Status",
    },
}

# --- ML -----------------------------------------------------------------------------------------
# Device for ML code: "cuda" when present unless RFSTUDIO_DEVICE overrides (cpu, cuda, cuda:1, mps).
RFSTUDIO_DEVICE = os.environ.get("RFSTUDIO_DEVICE", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
