"""Django settings for Sneakers.

Every setting is read from the environment through one django-environ object and has an embedded
default that works on a fresh checkout with no servers: SQLite and local media under ``var/``, and
an SQLite file as the Celery broker (``sneakers.broker``; a real, separate worker process, no Redis).
``DATABASE_URL``, ``CELERY_BROKER_URL`` and the ``AWS_*`` variables switch to PostgreSQL, Redis and
S3. README.md lists every variable.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

INSECURE_SECRET_KEY = "django-insecure-sneakers-development-key-change-me"

VAR_DIR = Path(env.str("SNEAKERS_VAR_DIR", default=str(BASE_DIR / "var")))
SHARED_DIR = Path(env.str("SNEAKERS_SHARED_DIR", default=str(BASE_DIR.parent / "shared")))

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=INSECURE_SECRET_KEY)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

if not DEBUG:
    # Production refuses insecure defaults instead of silently running with them.
    if SECRET_KEY == INSECURE_SECRET_KEY or len(SECRET_KEY) < 40:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set to a long random value when DJANGO_DEBUG is off.")
    if "*" in ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "DJANGO_ALLOWED_HOSTS must name the site's hosts, not '*', when DJANGO_DEBUG is off."
        )
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

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
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "catalog",
    "accounts",
    "registry",
    "worker",
    "predictions",
    "partners",
    "monitoring",
]

MIDDLEWARE = [
    "monitoring.middleware.RequestMetricsMiddleware",  # outermost: counts and times every answer
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "sneakers.exceptions.ApiNotFoundMiddleware",  # JSON 404s under /api/; before CommonMiddleware's slash redirect
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "partners.middleware.RateLimitHeadersMiddleware",
]

ROOT_URLCONF = "sneakers.urls"
WSGI_APPLICATION = "sneakers.wsgi.application"
ASGI_APPLICATION = "sneakers.asgi.application"

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
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
VAR_DIR.mkdir(parents=True, exist_ok=True)  # home of the embedded defaults (SQLite, media, broker, caches)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker process writes while the site reads: wait for locks instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
    # Transactions take the write lock when they begin (BEGIN IMMEDIATE), so one that read first and writes
    # later (the first-run import while the site stores an upload) waits for the lock instead of failing at
    # once with "database is locked" (SQLite cannot upgrade a read transaction after another write).
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
# Each web thread and worker process keeps its database connection between requests and tasks (Django's
# persistent connections), checked before reuse so one the server dropped is replaced: opening one per request
# cost about 6 ms of an API upload and read's 18 ms on SQLite (README "Speed"). 0 closes it after each.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "predictions:upload"
LOGOUT_REDIRECT_URL = "predictions:upload"
# Account emails (password reset) through Django's email backend: EMAIL_URL as django-environ reads it,
# e.g. smtp+tls://user:password@smtp.example.com:587; the default prints each email on the console.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Sneakers <no-reply@localhost>")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Files -------------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = env.str("DJANGO_MEDIA_URL", default="/media/")
MEDIA_ROOT = Path(env.str("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media")))

AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
if AWS_STORAGE_BUCKET_NAME:
    # django-storages S3 backend; credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
    # or the instance role, as boto3 resolves them.
    AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default="") or None
    AWS_S3_REGION_NAME = env.str("AWS_S3_REGION_NAME", default="") or None
    AWS_DEFAULT_ACL = None
    AWS_QUERYSTRING_AUTH = True
    AWS_S3_FILE_OVERWRITE = False
    DEFAULT_FILE_STORAGE_BACKEND = "storages.backends.s3.S3Storage"
else:
    DEFAULT_FILE_STORAGE_BACKEND = "django.core.files.storage.FileSystemStorage"
STORAGES = {
    "default": {"BACKEND": DEFAULT_FILE_STORAGE_BACKEND},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve MEDIA_URL from the Django process when files live on the local disk (the embedded default).
SERVE_MEDIA = env.bool("SNEAKERS_SERVE_MEDIA", default=not AWS_STORAGE_BUCKET_NAME)

# --- Uploads -----------------------------------------------------------------------------------
# Real phone photos reach 50 MP and 20 MB; the limits sit above that, and decompression bombs beyond.
SNEAKERS_UPLOAD_MAX_BYTES = env.int("SNEAKERS_UPLOAD_MAX_BYTES", default=25 * 1024 * 1024)
SNEAKERS_UPLOAD_MAX_PIXELS = env.int("SNEAKERS_UPLOAD_MAX_PIXELS", default=64_000_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_PERMISSIONS = 0o644

# --- Downloads of images and feeds by URL (catalog.downloads) --------------------------------------
# Only public internet addresses are fetched unless this is true (tests with a server on 127.0.0.1).
SNEAKERS_FETCH_ALLOW_PRIVATE = env.bool("SNEAKERS_FETCH_ALLOW_PRIVATE", default=False)
# Seconds for the connection and for each read; a whole body gets 4 times this.
SNEAKERS_FETCH_TIMEOUT_SECONDS = env.float("SNEAKERS_FETCH_TIMEOUT_SECONDS", default=10.0)
SNEAKERS_FETCH_MAX_BYTES = env.int("SNEAKERS_FETCH_MAX_BYTES", default=SNEAKERS_UPLOAD_MAX_BYTES)
# Retries after the first attempt (connection errors, 429, 5xx), with exponential backoff.
SNEAKERS_FETCH_RETRIES = env.int("SNEAKERS_FETCH_RETRIES", default=2)
SNEAKERS_FETCH_WORKERS = env.int("SNEAKERS_FETCH_WORKERS", default=8)  # concurrent downloads per ingest

# --- Models and data ---------------------------------------------------------------------------
SNEAKERS_BACKBONE_PATH = Path(
    env.str("SNEAKERS_BACKBONE_PATH", default=str(SHARED_DIR / "weights" / "efficientnet_lite0_imagenet_notop.keras"))
)
SNEAKERS_BACKGROUND_MODEL_PATH = Path(
    env.str("SNEAKERS_BACKGROUND_MODEL_PATH", default=str(SHARED_DIR / "weights" / "u2netp.onnx"))
)
SNEAKERS_BACKGROUND_METHOD = env.str("SNEAKERS_BACKGROUND_METHOD", default="u2netp")  # u2netp | grabcut | none
# Side, in pixels, of the square U^2-Net-p reads (README "Speed", fourth round: on 605 held-out photos 160 px got
# as many first guesses right as 256 px, at 0.4 times the time; 320 restores the size it was trained at).
SNEAKERS_BACKGROUND_INPUT_SIZE = env.int("SNEAKERS_BACKGROUND_INPUT_SIZE", default=160)
# Confidence cascade (README "Speed", fifth and sixth rounds): skip background removal when the brand head is at
# least this sure of the photo as it is; 0 turns it off. 0.8 was chosen on the validation side's wild photos (0.7 to
# 0.95 tried) and checked on the test side: on those 605 held-out photos as many right as at 0.9, U^2-Net-p on 0.42
# of product shots and 0.62 of real-world photos (0.57 and 0.75 at 0.9).
SNEAKERS_BACKGROUND_SKIP_CONFIDENCE = env.float("SNEAKERS_BACKGROUND_SKIP_CONFIDENCE", default=0.8)
# When background removal runs: empty (the default) follows the rule the model's training chose on validation photos;
# skip-plain, always or never override it (README "Speed": skip-plain doubles catalogue-shot throughput when the
# model chose always, at a measured cost in accuracy).
SNEAKERS_BACKGROUND_RULE = env.str("SNEAKERS_BACKGROUND_RULE", default="")
if SNEAKERS_BACKGROUND_RULE not in ("", "skip-plain", "always", "never"):
    raise ImproperlyConfigured(
        f"SNEAKERS_BACKGROUND_RULE must be empty, skip-plain, always or never, not {SNEAKERS_BACKGROUND_RULE!r}"
    )
# A photo whose background is removed while the host's other inference processes are idle uses every core
# (worker.ml.occupancy: busy marks are locks on slot files in this folder); beside busy ones, its own threads.
SNEAKERS_INFERENCE_SHARE_CORES = env.bool("SNEAKERS_INFERENCE_SHARE_CORES", default=True)
# Library that runs the networks on the CPU (worker.ml.runtimes): auto (OpenVINO unless a GPU is in use), openvino,
# or native (onnxruntime for U^2-Net-p, TensorFlow for the backbone). Same answers; the backbone 1.5 times as fast.
SNEAKERS_INFERENCE_RUNTIME = env.str("SNEAKERS_INFERENCE_RUNTIME", default="auto")
# U^2-Net-p's precision: auto (bf16 where OpenVINO runs it natively, on CPUs with AVX-512 BF16 or AMX, else f32), f32
# or bf16. bf16 takes about 0.6 times the time; models trained on its masks are as accurate on 605 held-out photos
# (README "Speed", fifth round).
SNEAKERS_BACKGROUND_PRECISION = env.str("SNEAKERS_BACKGROUND_PRECISION", default="auto")
# The backbone's precision when it serves predictions on OpenVINO, the same choices: bf16 took 0.63 times the time,
# embeddings at cosine 0.997-0.999 to float32's, as many held-out photos right (README "Speed", fifth round).
# Training always embeds at f32: a model trained on bf16 embeddings got 12 fewer of 234 real-world first guesses right.
SNEAKERS_BACKBONE_PRECISION = env.str("SNEAKERS_BACKBONE_PRECISION", default="auto")
SNEAKERS_INFERENCE_SLOTS_DIR = Path(env.str("SNEAKERS_INFERENCE_SLOTS_DIR", default=str(VAR_DIR / "inference-slots")))
# Catalog sets `manage.py bootstrap` imports: shop listings, and named shoe models (many photos each).
SNEAKERS_DATASET_DIR = Path(env.str("SNEAKERS_DATASET_DIR", default=str(SHARED_DIR / "datasets" / "sneakers")))
SNEAKERS_MODELS_DATASET_DIR = Path(
    env.str("SNEAKERS_MODELS_DATASET_DIR", default=str(SHARED_DIR / "datasets" / "sneaker_models"))
)
# Real-world photos (validation, threshold tuning, held-out evaluation) and non-footwear photos
# (the "not a sneaker" threshold); training goes on without them when the folders are absent.
SNEAKERS_WILD_DIR = Path(env.str("SNEAKERS_WILD_DIR", default=str(SHARED_DIR / "datasets" / "sneakers_wild")))
SNEAKERS_NEGATIVES_DIR = Path(env.str("SNEAKERS_NEGATIVES_DIR", default=str(SHARED_DIR / "datasets" / "negatives")))
SNEAKERS_IMAGENET_CLASSIFIER_PATH = Path(
    env.str(
        "SNEAKERS_IMAGENET_CLASSIFIER_PATH", default=str(SHARED_DIR / "weights" / "efficientnet_lite0_imagenet.keras")
    )
)
# Fine-tune the backbone's top as part of `train` (measured here: test brand top-1 0.814 -> 0.875,
# named-model top-1 0.532 -> 0.623, for about 30 more minutes on 2 CPU cores); false for a fast first run.
SNEAKERS_FINETUNE = env.bool("SNEAKERS_FINETUNE", default=True)
# Fewest training photos a named shoe model needs to be a class of the model head.
SNEAKERS_MODEL_MIN_PHOTOS = env.int("SNEAKERS_MODEL_MIN_PHOTOS", default=20)
SNEAKERS_CACHE_DIR = Path(env.str("SNEAKERS_CACHE_DIR", default=str(VAR_DIR / "cache")))
SNEAKERS_TRAINING_SEED = env.int("SNEAKERS_TRAINING_SEED", default=42)

# --- Cache (API rate-limit counters) ------------------------------------------------------------
# Shared by every process on the host by default with no server: diskcache's Django backend (SQLite files
# under var/diskcache; its add and incr are SQLite transactions, so processes count exactly), its connections
# left open between requests (sneakers.cache). Redis for several hosts, e.g. CACHE_URL=redis://host:6379/1.
if env.str("CACHE_URL", default=""):
    CACHES = {"default": env.cache("CACHE_URL")}
else:
    CACHES = {
        "default": {
            "BACKEND": "sneakers.cache.OpenDiskCache",
            "LOCATION": str(VAR_DIR / "diskcache"),
        }
    }

# --- REST framework ----------------------------------------------------------------------------
SNEAKERS_API_RATES = {
    "upload": env.str("SNEAKERS_API_UPLOAD_RATE", default="60/min"),
    "read": env.str("SNEAKERS_API_READ_RATE", default="600/min"),
    "anon": env.str("SNEAKERS_API_ANON_RATE", default="120/min"),
}
# Long polling of a prediction's status (``?wait=SECONDS`` on the API and the result page's status JSON;
# predictions.selectors.prediction_wait_terminal): the longest wait a client may ask for, how often each web
# process reads the statuses of all its waiting requests (predictions.longpoll, one query for all), and how many
# requests one web process lets wait at once (fewer than its threads: the Procfile's gunicorn runs 8 per
# process, so uploads always find one free).
SNEAKERS_LONG_POLL_MAX_SECONDS = env.float("SNEAKERS_LONG_POLL_MAX_SECONDS", default=20.0)
SNEAKERS_LONG_POLL_INTERVAL = env.float("SNEAKERS_LONG_POLL_INTERVAL", default=0.025)
SNEAKERS_LONG_POLL_WAITERS = env.int("SNEAKERS_LONG_POLL_WAITERS", default=5)
# Threads of each web process as the Procfile starts gunicorn (its ${SNEAKERS_WEB_THREADS:-8}); read here only to
# refuse a setting that would let long polls take every thread.
SNEAKERS_WEB_THREADS = env.int("SNEAKERS_WEB_THREADS", default=8)
if SNEAKERS_LONG_POLL_WAITERS >= SNEAKERS_WEB_THREADS:
    raise ImproperlyConfigured(
        f"SNEAKERS_LONG_POLL_WAITERS ({SNEAKERS_LONG_POLL_WAITERS}) must be below SNEAKERS_WEB_THREADS "
        f"({SNEAKERS_WEB_THREADS}): long polls would hold every thread of a web process and uploads would wait."
    )
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "partners.authentication.PartnerTokenAuthentication",  # DRF's, the partner's quota in the same query
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": [
        "partners.throttling.ReadRateThrottle",
        "partners.throttling.AnonRateThrottle",
        "partners.throttling.UploadRateThrottle",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env.int("SNEAKERS_API_PAGE_SIZE", default=20),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "sneakers.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Sneakers API",
    "DESCRIPTION": "Upload a sneaker photo; get its brand, a price estimate and similar catalog products.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Three models have a "status" choice set; each gets its own name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "PredictionStatusEnum": "predictions.models.Prediction.Status",
        "BatchStatusEnum": "partners.models.Batch.Status",
        "WebhookDeliveryStatusEnum": "partners.models.WebhookDelivery.Status",
    },
}

# --- Embedded database under load (speed, README "Speed") -------------------------------------
# SQLite in WAL mode with synchronous=NORMAL: a commit no longer waits for the disk (one fsync or more
# per upload, per status change), readers never block the writer, and IMMEDIATE transactions take the
# write lock at BEGIN, so a read-then-write transaction of one process cannot fail with "database is
# locked" when another wrote in between (Django 5.1+ OPTIONS init_command / transaction_mode; SQLite's
# WAL documentation). A crashed process loses nothing; a power cut may lose the last commits, and an
# upload whose row survives while its broker message does not is enqueued again by the sweeper.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" and env.bool("SNEAKERS_SQLITE_WAL", default=True):
    DATABASES["default"]["OPTIONS"].update(
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", transaction_mode="IMMEDIATE"
    )

# --- Celery ------------------------------------------------------------------------------------
# Embedded default: sneakers.broker, a kombu transport over one SQLite file (no server; atomic writes,
# rows of killed workers restored, polled every 50 ms). Redis in production (redis://host:6379/0).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=f"sqlite:///{VAR_DIR / 'broker.sqlite3'}")
if CELERY_BROKER_URL.startswith("sqlite://"):
    CELERY_BROKER_TRANSPORT = "sneakers.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Seconds an idle consumer waits between looks at its queues (kombu's virtual transports: 1 s).
        "polling_interval": env.float("CELERY_BROKER_POLLING_INTERVAL", default=0.05),
        # SQLite's PRAGMA synchronous: NORMAL is safe against crashes of processes but may drop the last
        # messages on a power cut; their uploads stay queued and the sweeper sends them again. FULL waits
        # for the disk on every message (about 1/3 of an upload's time here).
        "synchronous": env.str("CELERY_BROKER_SYNCHRONOUS", default="NORMAL"),
        # A message reserved by a process on another host is made ready again after this (seconds).
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3 * 3600),
    }
elif CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport, kept for those who ask for it: it can read a half-written message
    # (kombu issue 1551) and loses the messages a killed worker held; sneakers.broker has neither flaw.
    _broker_dir = VAR_DIR / "broker"
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # kombu otherwise writes its exchange tables to ./control in the working directory.
        "control_folder": str(_broker_dir / "control"),
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
    }
else:
    # Redis redelivers an unacknowledged task after the visibility timeout (seconds); it must
    # exceed the longest task (training) so running jobs are not handed out twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3 * 3600),
        "socket_connect_timeout": 2,
    }
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes every database connection around each task unless this is set (then only every
# 2 x this many tasks); sneakers.celery.close_old_db_connections closes the broken or old ones instead, as Django
# does around requests (CONN_MAX_AGE above), so a worker keeps its connection between jobs.
CELERY_DB_REUSE_MAX = 1000
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "predictions.tasks.predict": {"queue": "inference"},
    "predictions.tasks.sweep": {"queue": "default"},
    "registry.tasks.train": {"queue": "training"},
}
# Fail fast when the broker is down at upload time: the upload is kept `queued` and the sweeper
# enqueues it once the broker is back (seconds).
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=2.0)
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
CELERY_BEAT_SCHEDULE = {
    "sweep-predictions": {
        "task": "predictions.tasks.sweep",
        "schedule": env.float("SNEAKERS_SWEEP_INTERVAL_SECONDS", default=30.0),
    },
}
SNEAKERS_REQUEUE_AFTER_SECONDS = env.int("SNEAKERS_REQUEUE_AFTER_SECONDS", default=60)
SNEAKERS_REQUEUE_LOST_AFTER_SECONDS = env.int("SNEAKERS_REQUEUE_LOST_AFTER_SECONDS", default=1800)
# Longer than the predict task's hard time limit (360 s), so only jobs whose worker died are swept.
SNEAKERS_STUCK_AFTER_SECONDS = env.int("SNEAKERS_STUCK_AFTER_SECONDS", default=600)
SNEAKERS_MAX_ATTEMPTS = env.int("SNEAKERS_MAX_ATTEMPTS", default=3)
SNEAKERS_SWEEP_BATCH = env.int("SNEAKERS_SWEEP_BATCH", default=500)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Training jobs (registry: first run, training, evaluation, scheduled retraining) ---------------
# Every model job runs on the `training` queue (the Procfile's `jobs` worker) as a registry.TrainingRun.
CELERY_TASK_ROUTES.update(
    {
        "registry.tasks.bootstrap": {"queue": "training"},
        "registry.tasks.retrain": {"queue": "training"},
        "registry.tasks.evaluate": {"queue": "training"},
    }
)
# Scheduled retraining (seconds; 0 = off). Weekly by default: it costs nothing when the catalog has not
# changed since the active model was trained (the run is skipped), and a retrained candidate is activated
# only when it beats the active model on the same held-out photos (registry.gate).
SNEAKERS_RETRAIN_INTERVAL_SECONDS = env.int("SNEAKERS_RETRAIN_INTERVAL_SECONDS", default=7 * 24 * 3600)
if SNEAKERS_RETRAIN_INTERVAL_SECONDS > 0:
    CELERY_BEAT_SCHEDULE["retrain-models"] = {
        "task": "registry.tasks.retrain",
        "schedule": float(SNEAKERS_RETRAIN_INTERVAL_SECONDS),
    }
# A job writes its progress row at most this often (seconds), and at every stage change.
SNEAKERS_TRAINING_PROGRESS_SECONDS = env.float("SNEAKERS_TRAINING_PROGRESS_SECONDS", default=2.0)
# A running job whose heartbeat (written every 30 s) is older than this (seconds) lost its worker.
SNEAKERS_TRAINING_STALE_SECONDS = env.int("SNEAKERS_TRAINING_STALE_SECONDS", default=300)

# --- Catalog feeds (catalog.feeds; README "Catalog feeds") ----------------------------------------
# Feeds beat re-ingests: http(s) URLs or paths on the worker's host, comma-separated (Feed rows marked
# "scheduled" in admin are re-ingested too).
SNEAKERS_FEEDS = env.list("SNEAKERS_FEEDS", default=[])
SNEAKERS_FEED_INTERVAL_SECONDS = env.int("SNEAKERS_FEED_INTERVAL_SECONDS", default=24 * 3600)
SNEAKERS_FEED_MAX_BYTES = env.int("SNEAKERS_FEED_MAX_BYTES", default=200 * 1024 * 1024)  # one feed file
CELERY_TASK_ROUTES["catalog.tasks.ingest_feed"] = {"queue": "ingest"}
CELERY_TASK_ROUTES["catalog.tasks.ingest_scheduled_feeds"] = {"queue": "ingest"}
CELERY_BEAT_SCHEDULE["ingest-feeds"] = {
    "task": "catalog.tasks.ingest_scheduled_feeds",
    "schedule": float(SNEAKERS_FEED_INTERVAL_SECONDS),
}

# --- Partner API (partners: batches, webhooks, idempotency, rate limits; README "API") ------------
# Absolute URLs in webhook bodies (the site's public address as partners reach it).
SNEAKERS_PUBLIC_URL = env.str("SNEAKERS_PUBLIC_URL", default="http://localhost:8000")
SNEAKERS_BATCH_MAX_ITEMS = env.int("SNEAKERS_BATCH_MAX_ITEMS", default=100)  # photos and URLs per batch
SNEAKERS_BATCH_MAX_BYTES = env.int("SNEAKERS_BATCH_MAX_BYTES", default=200 * 1024 * 1024)  # one batch request
DATA_UPLOAD_MAX_NUMBER_FILES = max(100, SNEAKERS_BATCH_MAX_ITEMS)
SNEAKERS_IDEMPOTENCY_TTL_SECONDS = env.int("SNEAKERS_IDEMPOTENCY_TTL_SECONDS", default=24 * 3600)
# Webhooks: tries in all, backoff base and cap (seconds; full jitter), timeout per try (seconds). The cap
# stays under the Redis visibility timeout, so a waiting retry is never handed out twice.
SNEAKERS_WEBHOOK_MAX_ATTEMPTS = env.int("SNEAKERS_WEBHOOK_MAX_ATTEMPTS", default=8)
SNEAKERS_WEBHOOK_BACKOFF_SECONDS = env.int("SNEAKERS_WEBHOOK_BACKOFF_SECONDS", default=30)
SNEAKERS_WEBHOOK_BACKOFF_MAX_SECONDS = env.int("SNEAKERS_WEBHOOK_BACKOFF_MAX_SECONDS", default=3600)
SNEAKERS_WEBHOOK_TIMEOUT_SECONDS = env.float("SNEAKERS_WEBHOOK_TIMEOUT_SECONDS", default=10.0)
SNEAKERS_WEBHOOK_MAX_ENDPOINTS = env.int("SNEAKERS_WEBHOOK_MAX_ENDPOINTS", default=10)
# Webhooks go to public addresses only unless this is true (tests with a receiver on 127.0.0.1).
SNEAKERS_WEBHOOK_ALLOW_PRIVATE = env.bool("SNEAKERS_WEBHOOK_ALLOW_PRIVATE", default=False)
CELERY_TASK_ROUTES["partners.tasks.deliver_webhook"] = {"queue": "default"}
CELERY_TASK_ROUTES["partners.tasks.sweep"] = {"queue": "default"}
CELERY_TASK_ROUTES["predictions.tasks.idempotency_sweep"] = {"queue": "default"}
CELERY_BEAT_SCHEDULE["sweep-partners"] = {
    "task": "partners.tasks.sweep",
    "schedule": env.float("SNEAKERS_SWEEP_INTERVAL_SECONDS", default=30.0),
}
CELERY_BEAT_SCHEDULE["sweep-idempotency-keys"] = {"task": "predictions.tasks.idempotency_sweep", "schedule": 3600.0}

# --- Monitoring (monitoring app: /api/v1/monitor/, admin dashboard, Prometheus /metrics) -----------
# /metrics answers staff, clients from these addresses or networks (default loopback only) and, when set, a
# request with "Authorization: Bearer <SNEAKERS_METRICS_TOKEN>"; anyone else gets 403.
SNEAKERS_METRICS_TOKEN = env.str("SNEAKERS_METRICS_TOKEN", default="")
SNEAKERS_METRICS_ALLOWED_IPS = env.list("SNEAKERS_METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"])
# Request counters of every web process are added up through files in this folder (prometheus-client's
# multi-process mode; empty it when the web service starts). Empty: each process reports its own counts.
SNEAKERS_METRICS_MULTIPROC_DIR = env.str("SNEAKERS_METRICS_MULTIPROC_DIR", default=str(VAR_DIR / "prometheus"))
if SNEAKERS_METRICS_MULTIPROC_DIR:
    # prometheus-client reads this variable when it is first imported, which is after the settings.
    import os as _os

    _os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", SNEAKERS_METRICS_MULTIPROC_DIR)
    Path(_os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

# --- Logging -----------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
