"""Portcullis settings, read from the environment.

Embedded defaults let a newcomer run the app with nothing but Python: no DATABASE_URL
means a SQLite file, no REDIS_URL means an in-memory channel layer and Celery tasks
run in-process. Production (DEBUG off) refuses to start without a real SECRET_KEY.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

# Lets generic admin and queryset classes be subscripted at run time, as the type hints do.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)

_DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = _DEV_SECRET_KEY
elif not DEBUG and (len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured("SECRET_KEY must be a random string of at least 50 characters.")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# HTTPS is on by default in production; DEBUG (a laptop) and the browser tests talk plain
# HTTP on loopback, where Secure cookies would never come back.
HTTPS = env_bool("HTTPS", not DEBUG)

INSTALLED_APPS = [
    "accounts.apps.PortcullisAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Its configuration checks (and DEBUG's start-up warning that they are off otherwise).
    "servestatic",
    "django_otp",
    "accounts.apps.AuthenticatorAppsConfig",
    "accounts.apps.BackupCodesConfig",
    "guardian",
    "accounts.apps.ChangeHistoryConfig",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "csp",
    "accounts",
    "audit",
    "inbox",
    "channels_app",
]

MIDDLEWARE = [
    # Outermost: request latency for the metrics endpoint includes every gate below.
    "config.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.htmx: the agent workspace answers its in-place requests with one pane.
    "django_htmx.middleware.HtmxMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.SessionLifetimeMiddleware",
    "accounts.devices.middleware.DeviceBindingMiddleware",
    "accounts.middleware.VerifiedAccessMiddleware",
    "accounts.middleware.StepUpMiddleware",
    "audit.middleware.AlertResponseMiddleware",
    "audit.middleware.AccessEventMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
    "config.middleware.NotFoundPageMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"
# What one server process takes (docs/operations.md, "Separate pools"): everything, or
# only pages, API and webhooks ("http": sockets refused), or only websockets ("sockets":
# over HTTP only the health and metrics URLs its monitors ask). Agents' reply POSTs in a
# socket process starved its sockets (docs/capacity.md): behind a proxy that routes /ws/
# to one pool and the rest to the other, neither waits on the other.
ASGI_SERVES = os.environ.get("ASGI_SERVES", "all")
if ASGI_SERVES not in {"all", "http", "sockets"}:
    raise ImproperlyConfigured("ASGI_SERVES must be all, http or sockets.")

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
                "csp.context_processors.nonce",
                "accounts.context_processors.session_warning",
                "accounts.devices.context_processors.device_binding",
            ],
        },
    },
]

# --- Data stores ------------------------------------------------------------------------

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
# Under ASGI every request runs its sync code in a thread of its own, so a persistent
# connection is never reused: each request would open one. DB_POOL_SIZE > 0 (PostgreSQL)
# keeps a pool per process instead (psycopg_pool); connections then go back to it after
# each request.
DB_POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "0"))
# A database that is down or unreachable must fail a request fast (answered 503, see
# config.api.server_error), not hold it: libpq otherwise waits on the TCP connect for as
# long as the kernel does (minutes when packets vanish). 2 s is libpq's minimum.
DB_CONNECT_TIMEOUT_SECONDS = int(os.environ.get("DB_CONNECT_TIMEOUT_SECONDS", "2"))
# How long a request waits for a pooled connection (all in use, or the database away)
# before it is answered 503. The pool's reconnection gives up as soon and the next request
# starts a new one, so after a restart the pool does not wait out a long backoff.
DB_POOL_TIMEOUT_SECONDS = float(os.environ.get("DB_POOL_TIMEOUT_SECONDS", "1"))
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = DB_CONNECT_TIMEOUT_SECONDS
    # A statement run through channels_app.common.inbound.bound_cursor (the raw stores) is
    # prepared on a connection's fifth run of it: PostgreSQL stops planning the webhook
    # intake's statement for every delivery. Django's own cursors bind on the client and
    # never prepare. A transaction-mode pooler would lose them: PgBouncer in session mode.
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = 5
    if DB_POOL_SIZE:
        # With CONN_HEALTH_CHECKS (on above) each connection is checked as it leaves the
        # pool, one round trip: after a database restart every pooled connection is broken,
        # and each would otherwise fail a request before the pool dropped it. (psycopg_pool
        # backs off after a second broken one in a row: that request is still answered 503.)
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": 1,
            "max_size": DB_POOL_SIZE,
            "timeout": DB_POOL_TIMEOUT_SECONDS,
            "reconnect_timeout": DB_POOL_TIMEOUT_SECONDS,
        }
# Threads for the sockets' database work in one server process (accounts.sockets): the
# loop's default executor has min(32, CPUs + 4), 6 on two cores, and socket stores waited
# for a thread rather than for the database. Each thread holds at most one connection, so
# a socket process's DB_POOL_SIZE must be at least this plus one (the agents' gate).
SOCKET_DB_THREADS = int(os.environ.get("SOCKET_DB_THREADS", "16"))
# Threads for HTTP requests in one server process (config.handler): each request holds
# one from its body read to its response, and at most one database connection, so a
# process's DB_POOL_SIZE must be at least this (plus the sockets' when it serves both). A
# request finding every thread busy waits for one instead of failing.
HTTP_THREADS = int(os.environ.get("HTTP_THREADS", "8"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
REDIS_CHANNEL_LAYERS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
# Pub/sub, by the live chat benchmark (tests/benchmarks/livechat.py, docs/livechat.md): a
# group send is one PUBLISH that each server receives once, where the core layer writes a
# copy into every member's queue; and the core layer's per-channel capacity dropped events
# once agents fell behind, while pub/sub lost none at lower latency. Its at-most-once
# delivery costs nothing here: every event follows a committed row, which pages and the
# widget's history read again on reconnect.
REDIS_CHANNEL_LAYER_DEFAULT = "pubsub"
# Redis pub/sub channels ignore the database number: two deployments (or test runs) on one
# Redis server would hear each other's events. The prefix keeps them apart.
CHANNEL_LAYER_PREFIX = os.environ.get("CHANNEL_LAYER_PREFIX") or (
    "portcullis" + (urlsplit(REDIS_URL).path.strip("/") or "0")
)

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "portcullis",
            # One pool per process, not per handle (config/redis.py says why).
            "OPTIONS": {"pool_class": "config.redis.ProcessConnectionPool"},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": REDIS_CHANNEL_LAYERS[
                os.environ.get("REDIS_CHANNEL_LAYER", REDIS_CHANNEL_LAYER_DEFAULT)
            ],
            "CONFIG": {"hosts": [REDIS_URL], "prefix": CHANNEL_LAYER_PREFIX},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Celery -----------------------------------------------------------------------------

# The in-memory transport wants a host name too, or kombu warns at the first task.
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_RESULT_BACKEND = None
# Without a broker the tasks run in-process, so `make run` needs no Redis.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
# JSON only: a pickled payload from a compromised producer must never be executed.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task taken by a worker that then died without a word (SIGKILL, a lost machine) stays
# unacknowledged on the Redis broker, and is handed out again this long after it was taken.
# It must exceed the longest task and the longest countdown (Redis holds a waiting task as
# taken): a task still running, or still waiting, would otherwise be run a second time.
# Webhook events do not wait that long: the sweep re-queues them after minutes.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT_SECONDS", "3600")),
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# One beat entry fans out to every enabled channel; each channel keeps its own interval.
CELERY_BEAT_SCHEDULE = {
    "email-poll-due": {
        "task": "channels_app.email_poll_due",
        "schedule": float(os.environ.get("EMAIL_POLL_TICK_SECONDS", "15")),
    },
    # Restarts Telegram pull-mode poll chains whose worker died; a live chain re-queues itself.
    "telegram-poll-due": {"task": "channels_app.telegram_poll_due", "schedule": 15.0},
    # Webhook deliveries whose processing task was lost (broker down after the commit).
    "social-events-sweep": {"task": "channels_app.social_events_sweep", "schedule": 60.0},
    # Privilege changes nobody approved in time are closed (approval re-checks expiry too).
    "change-requests-expire": {"task": "accounts.change_requests_expire", "schedule": 300.0},
    # Chains new audit rows shortly after they commit (see audit.chain); the minute's
    # checkpoint seals too, then signs the chain heads out of the database.
    "audit-chain-seal": {
        "task": "audit.chain_seal",
        "schedule": float(os.environ.get("AUDIT_SEAL_INTERVAL_SECONDS", "5")),
    },
    "audit-checkpoint": {"task": "audit.checkpoint_write", "schedule": 60.0},
    # Export files whose link expired unread are deleted (a read one is deleted at once).
    "exports-purge": {"task": "inbox.exports_purge", "schedule": 300.0},
    # Sign-in detectors read new security events (also woken at once by sign-in events);
    # the read baselines the inline detector compares with are refreshed hourly.
    "audit-detectors": {"task": "audit.detectors_run", "schedule": 10.0},
    "audit-read-baselines": {"task": "audit.read_baselines_refresh", "schedule": 3600.0},
}

# --- Authentication ---------------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
# guardian's object-permission backend is left out on purpose: object access is decided
# by inbox.policy alone, which also honours grant expiry.
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
SILENCED_SYSTEM_CHECKS = ["guardian.W001"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "/"

OTP_TOTP_ISSUER = os.environ.get("OTP_ISSUER", "Portcullis")
# Nobody, administrators included, reads another person's authenticator key in the admin.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
OTP_TOTP_TOLERANCE = 1  # accept one 30 s step of clock drift either way
OTP_TOTP_THROTTLE_FACTOR = 1  # seconds, doubled after every consecutive failure
OTP_STATIC_THROTTLE_FACTOR = 1
# Consecutive second-factor failures after which the account is locked until a
# supervisor unlocks it: throttling slows guessing, the lock ends it.
OTP_LOCKOUT_THRESHOLD = int(os.environ.get("OTP_LOCKOUT_THRESHOLD", "10"))
# An enrollment QR that was not confirmed in time is discarded.
OTP_ENROLLMENT_TTL = timedelta(minutes=15)
# Changing a second factor or other sensitive actions need a code this fresh.
STEP_UP_MAX_AGE = timedelta(minutes=5)

# Devices (accounts.devices, docs/devices.md). DEVICE_BINDING: "enforce" refuses a request of
# a signed-in session that its device key did not sign (state changes) or lately renew
# (reads); "monitor" only records it; "off" skips the check (the test suite's default).
DEVICE_BINDING = os.environ.get("DEVICE_BINDING", "enforce")
if DEVICE_BINDING not in {"off", "monitor", "enforce"}:
    raise ImproperlyConfigured("DEVICE_BINDING must be off, monitor or enforce.")
# A browser without WebCrypto or IndexedDB: "refuse" its sign-in, or give it a device cookie
# with trust "low" (a thief copies that cookie with the session) that rules can act on.
DEVICE_WEAK_FALLBACK = os.environ.get("DEVICE_WEAK_FALLBACK", "refuse")
if DEVICE_WEAK_FALLBACK not in {"refuse", "cookie"}:
    raise ImproperlyConfigured("DEVICE_WEAK_FALLBACK must be refuse or cookie.")
# A stolen session cookie reads at most this long: the bound cookie only a signature of the
# device key renews (the page's script renews it at half this).
DEVICE_REFRESH_SECONDS = int(os.environ.get("DEVICE_REFRESH_SECONDS", "120"))
# Server nonces bound how old a proof can be; a proof's own time (iat) may be this far off,
# which tolerates a badly set clock without letting a proof live longer than its nonce.
DEVICE_NONCE_MAX_AGE_SECONDS = int(os.environ.get("DEVICE_NONCE_MAX_AGE_SECONDS", "600"))
DEVICE_PROOF_MAX_AGE_SECONDS = 300
# What a new device needs before the inbox opens on it: nothing ("open"), a supervisor's
# approval ("approval"), or either that or its owner's passkey ("passkey_or_approval").
# The one setting the code reads. DEVICE_APPROVAL_REQUIRED=1, its older name, means
# "approval" when DEVICE_NEW_DEVICE is not set; set both, and they must agree.
DEVICE_NEW_DEVICE = os.environ.get(
    "DEVICE_NEW_DEVICE", "approval" if env_bool("DEVICE_APPROVAL_REQUIRED", False) else "open"
)
if DEVICE_NEW_DEVICE not in {"open", "approval", "passkey_or_approval"}:
    raise ImproperlyConfigured("DEVICE_NEW_DEVICE must be open, approval or passkey_or_approval.")
if os.environ.get("DEVICE_APPROVAL_REQUIRED") and env_bool("DEVICE_APPROVAL_REQUIRED", False) != (
    DEVICE_NEW_DEVICE != "open"
):
    raise ImproperlyConfigured("DEVICE_APPROVAL_REQUIRED contradicts DEVICE_NEW_DEVICE; set only the latter.")
# Under "passkey_or_approval": only a device-bound passkey (not a synced one, which lives on
# every device of its sync account) may open a new device.
DEVICE_NEW_DEVICE_PASSKEY_BOUND = env_bool("DEVICE_NEW_DEVICE_PASSKEY_BOUND", False)
# Where the browser speaks Device Bound Session Credentials, it renews the bound cookie with
# a key of its own too (accounts.devices.dbsc): offered at sign-in unless binding is off.
DEVICE_DBSC = env_bool("DEVICE_DBSC", True)
# Signed posture attestations (POST /api/v1/devices/attest) from the company's MDM/EDR: the
# JWT's issuer and audience, its public key (PEM; ES256, RS256 or EdDSA), and how old its
# iat may be. No issuer: attestations are refused.
DEVICE_ATTESTATION_ISSUER = os.environ.get("DEVICE_ATTESTATION_ISSUER", "")
DEVICE_ATTESTATION_PUBLIC_KEY = os.environ.get("DEVICE_ATTESTATION_PUBLIC_KEY", "")
DEVICE_ATTESTATION_AUDIENCE = os.environ.get("DEVICE_ATTESTATION_AUDIENCE", "portcullis")
DEVICE_ATTESTATION_MAX_AGE_SECONDS = int(os.environ.get("DEVICE_ATTESTATION_MAX_AGE_SECONDS", "300"))
# The oldest major version of each browser family (as ua-parser names it) a device may run
# before its trust drops to low, e.g. "Chrome=120,Firefox=121"; unnamed families have none.
DEVICE_MIN_BROWSER_VERSIONS: dict[str, int] = {
    family.strip(): int(version)
    for family, _, version in (
        item.partition("=")
        for item in os.environ.get("DEVICE_MIN_BROWSER_VERSIONS", "").split(",")
        if item.strip()
    )
}
# Passkeys: the authenticator model an AAGUID names, shown to the user and to supervisors
# (an authenticator with "none" attestation may send any AAGUID: a label, not a proof).
PASSKEY_AUTHENTICATOR_NAMES: dict[str, str] = {
    "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4": "Google Password Manager",
    "fbfc3007-154e-4ecc-8c0b-6e020557d7bd": "iCloud Keychain",
    "08987058-cadc-4b81-b6e1-30de50dcbe96": "Windows Hello",
}

# Supervision: a grant without an expiry or longer than this needs a second supervisor;
# an unapproved change request lapses; an enrollment code is handed over out of band.
GRANT_MAX_DURATION = timedelta(days=int(os.environ.get("GRANT_MAX_DAYS", "30")))
CHANGE_REQUEST_TTL = timedelta(hours=int(os.environ.get("CHANGE_REQUEST_HOURS", "72")))
ENROLLMENT_CODE_TTL = timedelta(hours=int(os.environ.get("ENROLLMENT_CODE_HOURS", "72")))
# How often a process asks whether another one changed a policy rule (its own changes
# apply at once).
POLICY_RULES_RECHECK_SECONDS = float(os.environ.get("POLICY_RULES_RECHECK_SECONDS", "0.5"))
BACKUP_CODE_COUNT = 10

# The password step (accounts/throttle.py). Per account (every typed name, known or not)
# and per source address: failures beyond the first *_DELAY_AFTER wait BASE_DELAY, doubled
# after each further failure; from *_BLOCK_AFTER on, every attempt waits out BLOCK. An
# address gets more room than an account because an office shares one. Counts are
# forgotten FORGET_AFTER the last failure.
LOGIN_THROTTLE_ACCOUNT_DELAY_AFTER = int(os.environ.get("LOGIN_THROTTLE_ACCOUNT_DELAY_AFTER", "5"))
LOGIN_THROTTLE_ACCOUNT_BLOCK_AFTER = int(os.environ.get("LOGIN_THROTTLE_ACCOUNT_BLOCK_AFTER", "10"))
LOGIN_THROTTLE_ADDRESS_DELAY_AFTER = int(os.environ.get("LOGIN_THROTTLE_ADDRESS_DELAY_AFTER", "20"))
LOGIN_THROTTLE_ADDRESS_BLOCK_AFTER = int(os.environ.get("LOGIN_THROTTLE_ADDRESS_BLOCK_AFTER", "50"))
LOGIN_THROTTLE_BASE_DELAY = timedelta(seconds=1)
LOGIN_THROTTLE_BLOCK = timedelta(minutes=15)
LOGIN_THROTTLE_FORGET_AFTER = timedelta(hours=1)
# This many different usernames failing from one address within one window is credential
# stuffing: one critical security event per address and window.
LOGIN_STUFFING_USERNAMES = int(os.environ.get("LOGIN_STUFFING_USERNAMES", "10"))
LOGIN_STUFFING_WINDOW = timedelta(minutes=15)

GUARDIAN_RAISE_403 = False
ANONYMOUS_USER_NAME = None

# --- Sessions and cookies ---------------------------------------------------------------

SESSION_ENGINE = (
    "django.contrib.sessions.backends.cached_db" if REDIS_URL else "django.contrib.sessions.backends.db"
)
# Minutes may be fractional ("0.5"), which lets a browser test watch a timeout happen.
SESSION_IDLE_TIMEOUT = timedelta(seconds=round(60 * float(os.environ.get("SESSION_IDLE_MINUTES", "30"))))
# The agent pages warn this long before the idle timeout, with a way to stay signed in.
SESSION_IDLE_WARNING = timedelta(seconds=int(os.environ.get("SESSION_IDLE_WARNING_SECONDS", "120")))
SESSION_ABSOLUTE_TIMEOUT = timedelta(hours=int(os.environ.get("SESSION_ABSOLUTE_HOURS", "12")))
SESSION_COOKIE_AGE = int(SESSION_ABSOLUTE_TIMEOUT.total_seconds())
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_USE_SESSIONS = False
# Messages may carry a one-time secret (a new API token): keep them server-side, not in a
# signed-but-readable cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

if HTTPS:
    # The `__Host-` prefix makes the browser refuse these cookies unless they are
    # Secure, host-only and path=/, so a sibling subdomain cannot plant or read them.
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(60 * 60 * 24 * 365)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # Behind a TLS-terminating proxy, trust its scheme header (and only that).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# --- Secrets at rest --------------------------------------------------------------------

# Comma-separated Fernet keys, newest first: the first encrypts, all decrypt, so keys
# rotate without downtime. Unset in DEBUG, a key is derived from SECRET_KEY.
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS")
if not FIELD_ENCRYPTION_KEYS and not DEBUG:
    raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set when DEBUG is off.")

# --- Channels ---------------------------------------------------------------------------

# Networks a channel may connect to although they are loopback, private or link-local
# (CIDRs). Empty in production: a supervisor cannot point a channel into the internal
# network (SSRF). A laptop may fetch mail from a local server.
CHANNEL_ALLOW_PRIVATE_HOSTS = env_list("CHANNEL_ALLOW_PRIVATE_HOSTS", "127.0.0.0/8,::1/128" if DEBUG else "")
# The only ports those networks are allowed on, in DEBUG too (e.g. "1143,1025" for a local
# Dovecot and SMTP catcher): a listed network must not open its database or Redis port.
CHANNEL_ALLOW_PRIVATE_PORTS = [int(port) for port in env_list("CHANNEL_ALLOW_PRIVATE_PORTS")]
# The platform's own mail (alert notifications to supervisors), not a channel's: `make run`
# points it at the demo's SMTP sink.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
# An email poll holds its channel this long and renews the hold at every step; a poll
# whose worker died is re-taken once it runs out (by the next beat tick, 15 s later).
EMAIL_POLL_LEASE_SECONDS = int(os.environ.get("EMAIL_POLL_LEASE_SECONDS", "45"))
# Larger mail keeps only its header and stays on the server; larger attachments stay in
# the raw message.
EMAIL_MAX_MESSAGE_BYTES = int(os.environ.get("EMAIL_MAX_MESSAGE_BYTES", str(25 * 1024 * 1024)))
EMAIL_MAX_ATTACHMENT_BYTES = int(os.environ.get("EMAIL_MAX_ATTACHMENT_BYTES", str(10 * 1024 * 1024)))
# Messages one poll task imports before it queues a follow-up, so a backlog cannot hog a worker.
EMAIL_POLL_MAX_MESSAGES = int(os.environ.get("EMAIL_POLL_MAX_MESSAGES", "2000"))
# Webhook bodies above this are refused (413) before their signature is even computed.
WEBHOOK_MAX_BODY_BYTES = int(os.environ.get("WEBHOOK_MAX_BODY_BYTES", str(1024 * 1024)))
# Media fetched from a provider into an attachment; larger files stay with the provider.
SOCIAL_MEDIA_MAX_BYTES = int(os.environ.get("SOCIAL_MEDIA_MAX_BYTES", str(16 * 1024 * 1024)))
# Provider APIs; a channel may override its own (a proxy, or a test server).
TELEGRAM_API_BASE_URL = os.environ.get("TELEGRAM_API_BASE_URL", "https://api.telegram.org")
META_GRAPH_API_BASE_URL = os.environ.get("META_GRAPH_API_BASE_URL", "https://graph.facebook.com/v21.0")
TWILIO_API_BASE_URL = os.environ.get("TWILIO_API_BASE_URL", "https://api.twilio.com")
# getUpdates long-poll: how long one request waits for updates (each poll holds a worker slot).
TELEGRAM_POLL_TIMEOUT_SECONDS = int(os.environ.get("TELEGRAM_POLL_TIMEOUT_SECONDS", "20"))
# Retries of replies and of event processing wait up to this times 2^attempt (jittered).
SOCIAL_RETRY_BACKOFF_SECONDS = float(os.environ.get("SOCIAL_RETRY_BACKOFF_SECONDS", "5"))

# --- Live chat and the agents' sockets ---------------------------------------------------

# A visitor token (kept by the widget) resumes the visitor's conversation for this long
# after their last connection; each connection issues a fresh one.
LIVECHAT_VISITOR_TOKEN_MAX_AGE = int(os.environ.get("LIVECHAT_VISITOR_TOKEN_HOURS", "24")) * 3600
LIVECHAT_MAX_FRAME_BYTES = 16 * 1024
LIVECHAT_MAX_TEXT_LENGTH = 4000
# Fixed-window counters in the cache (Redis when configured), shared by every server.
LIVECHAT_RATE_WINDOW_SECONDS = 10
LIVECHAT_VISITOR_MESSAGES_PER_WINDOW = int(os.environ.get("LIVECHAT_VISITOR_MESSAGES_PER_WINDOW", "10"))
# Offices and mobile carriers put many visitors behind one address: generous, but bounded.
LIVECHAT_IP_MESSAGES_PER_WINDOW = int(os.environ.get("LIVECHAT_IP_MESSAGES_PER_WINDOW", "100"))
LIVECHAT_IP_CONNECTS_PER_WINDOW = int(os.environ.get("LIVECHAT_IP_CONNECTS_PER_WINDOW", "50"))
# Visitors' messages one server process stores at once; past it a message is answered
# "busy" and the widget sends it again after LIVECHAT_BUSY_RETRY_MS (doubling) instead of
# queueing without bound (docs/capacity.md).
LIVECHAT_STORES_IN_FLIGHT = int(os.environ.get("LIVECHAT_STORES_IN_FLIGHT", "64"))
LIVECHAT_BUSY_RETRY_MS = 500
# /metrics (Prometheus) answers only `Authorization: Bearer <METRICS_TOKEN>`; unset, a 404.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
LIVECHAT_MAX_UPLOAD_BYTES = int(os.environ.get("LIVECHAT_MAX_UPLOAD_BYTES", str(5 * 1024 * 1024)))
# Judged by the bytes, never by the name or the declared type.
LIVECHAT_UPLOAD_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"}
)
# Open sockets re-verify at once when access changes (signals) and at every known deadline
# (grant expiry, session timeouts); this slower sweep catches changes made behind the
# application's back, such as a grant edited in SQL.
LIVE_ACCESS_RECHECK_SECONDS = float(os.environ.get("LIVE_ACCESS_RECHECK_SECONDS", "30"))
# An agent's presence lapses this long after their page's last heartbeat.
AGENT_PRESENCE_TTL_SECONDS = 60

# Governed exports (inbox.exports, docs/exports.md). Files are written outside MEDIA_ROOT,
# never served by the web server: only the one-time download link reads them. In production
# this is a volume the workers and the web servers share.
EXPORTS_ROOT = Path(os.environ.get("EXPORTS_ROOT", str(BASE_DIR / "var" / "exports")))
# What one user may export in any 24 hours: files, and rows over all of them.
EXPORT_DAILY_MAX_FILES = int(os.environ.get("EXPORT_DAILY_MAX_FILES", "5"))
EXPORT_DAILY_MAX_ROWS = int(os.environ.get("EXPORT_DAILY_MAX_ROWS", "200000"))
# How long a finished export's download link lives; the file is deleted once read.
EXPORT_LINK_TTL = timedelta(minutes=int(os.environ.get("EXPORT_LINK_TTL_MINUTES", "15")))

# Break-glass (inbox.breakglass, docs/breakglass.md): the longest time-boxed grant an
# agent may ask for, and whether an emergency request is granted at once (with an alarm)
# instead of waiting for a supervisor.
BREAKGLASS_MAX_MINUTES = int(os.environ.get("BREAKGLASS_MAX_MINUTES", "240"))
BREAKGLASS_EMERGENCY_ALLOWED = os.environ.get("BREAKGLASS_EMERGENCY_ALLOWED", "0") == "1"

# PII masking (inbox.dlp.masking): whether revealing one masked item to a role without
# "view PII" needs a fresh second factor.
PII_REVEAL_STEP_UP = os.environ.get("PII_REVEAL_STEP_UP", "1") == "1"

# Outbound DLP (inbox.dlp; rules are data in the admin, these describe the company).
# The region phone numbers without a country code are read in (ISO 3166 alpha-2).
DLP_PHONE_REGION = os.environ.get("DLP_PHONE_REGION", "DE")
# The company's own numbers and addresses: agents may give them out.
DLP_ALLOWED_CONTACTS = [c.strip() for c in os.environ.get("DLP_ALLOWED_CONTACTS", "").split(",") if c.strip()]
# National identity numbers to look for, as python-stdnum modules ("country.format").
DLP_NATIONAL_ID_FORMATS = os.environ.get("DLP_NATIONAL_ID_FORMATS", "de.idnr,nl.bsn,es.dni,us.ssn").split(",")
# Free-mail domains: an address there is a person's own, not a company's.
DLP_FREE_MAIL_DOMAINS = frozenset(
    [
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.de",
        "yahoo.fr",
        "yahoo.es",
        "hotmail.com",
        "hotmail.de",
        "hotmail.fr",
        "outlook.com",
        "outlook.de",
        "live.com",
        "live.de",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "gmx.de",
        "gmx.net",
        "gmx.at",
        "gmx.com",
        "web.de",
        "t-online.de",
        "freenet.de",
        "posteo.de",
        "mailbox.org",
        "proton.me",
        "protonmail.com",
        "tutanota.com",
        "mail.com",
        "mail.ru",
        "yandex.ru",
        "yandex.com",
        "orange.fr",
        "free.fr",
        "laposte.net",
        "wanadoo.fr",
        "libero.it",
        "gmail.es",
        "terra.es",
    ]
)

# --- API --------------------------------------------------------------------------------

REST_FRAMEWORK = {
    # Token first: it answers 401 with a Bearer challenge to a request that proves nothing.
    # The session authenticator enforces CSRF on unsafe methods.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Deny by default: every endpoint opts in to what it allows.
    "DEFAULT_PERMISSION_CLASSES": ["accounts.api.VerifiedAccess"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # OPTIONS would describe endpoints without a handler of their own: refused instead.
    "DEFAULT_METADATA_CLASS": None,
    "EXCEPTION_HANDLER": "config.api.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Portcullis API",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema maps the API: only for a verified session or a usable token.
    "SERVE_PERMISSIONS": ["accounts.api.VerifiedAccess"],
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "ConversationStatusEnum": "inbox.models.Conversation.Status",
        "InvoiceStatusEnum": "inbox.models.Invoice.Status",
    },
}

# --- Static files, i18n -----------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
SERVESTATIC_USE_FINDERS = DEBUG or not STATIC_ROOT.exists()


def _static_file_headers(headers: Any, path: str, url: str) -> None:
    """Static files are served before the middleware (config.handler): what
    SecurityMiddleware gives every page that matters for a file, it gets here."""
    headers["X-Content-Type-Options"] = "nosniff"


SERVESTATIC_ADD_HEADERS_FUNCTION = _static_file_headers

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging ----------------------------------------------------------------------------

# "plain" lines for people; "json", one object a line (time, level, name, message and any
# `extra` fields), for a log collector that indexes fields rather than parsing text.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured("LOG_FORMAT must be plain or json.")
_LOG_LINE = "%(asctime)s %(levelname)s %(name)s %(message)s"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": _LOG_LINE},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": _LOG_LINE,
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # httpx logs every request URL at INFO, and Telegram's URLs carry the bot token.
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

# --- Audit trail ------------------------------------------------------------------------

AUDITLOG_INCLUDE_TRACKING_MODELS = (
    {
        "model": "accounts.User",
        "m2m_fields": {"groups", "user_permissions"},
        "exclude_fields": ["password", "last_login"],
    },
    {"model": "auth.Group", "m2m_fields": {"permissions"}},
    {"model": "otp_totp.TOTPDevice", "exclude_fields": ["key", "last_t", "drift"]},
    {"model": "otp_static.StaticDevice"},
    {"model": "accounts.ChangeRequest"},
    {"model": "accounts.ApprovalRule"},
    {"model": "inbox.PolicyRule", "m2m_fields": {"groups", "inboxes"}},
    {"model": "inbox.InboxUserObjectPermission"},
    {"model": "inbox.InboxGroupObjectPermission"},
    {"model": "inbox.ConversationUserObjectPermission"},
    {"model": "inbox.ConversationGroupObjectPermission"},
    {"model": "inbox.TeamUserObjectPermission"},
    {"model": "inbox.TeamGroupObjectPermission"},
    {"model": "audit.ResponsePolicy"},
    {"model": "audit.BlockedAddress"},
)
AUDITLOG_STORE_JSON_CHANGES = True

# --- Tamper evidence (audit.chain) ------------------------------------------------------

# Base64 of the 32-byte Ed25519 seed that signs the minute's checkpoint. Required when
# DEBUG is off; in DEBUG a key is generated once into AUDIT_SIGNING_KEY_FILE.
AUDIT_SIGNING_KEY = os.environ.get("AUDIT_SIGNING_KEY", "")
AUDIT_SIGNING_KEY_FILE = Path(
    os.environ.get("AUDIT_SIGNING_KEY_FILE", str(BASE_DIR / "var" / "audit-signing.key"))
)
# Base64 of the raw public key, for a machine that only verifies (it needs no private key).
AUDIT_VERIFY_KEY = os.environ.get("AUDIT_VERIFY_KEY", "")
# Checkpoints go outside the database: a JSON-lines file, ideally shipped off the host.
AUDIT_CHECKPOINT_FILE = Path(
    os.environ.get("AUDIT_CHECKPOINT_FILE", str(BASE_DIR / "var" / "audit" / "checkpoints.jsonl"))
)
# How long the sealer waits on a gap in an audit table's ids before taking it for a
# rolled-back insert; longer than any transaction that writes audit rows.
AUDIT_SEAL_GRACE_SECONDS = int(os.environ.get("AUDIT_SEAL_GRACE_SECONDS", "60"))

# --- Continuous verification (audit.detectors, audit.alerts) ---------------------------

# Bulk reads, judged inline per minute: above the user's own busiest minute of the last
# MONITOR_BASELINE_DAYS times the factor (never below the floor) is unusual for them;
# above the ceiling is too much for anyone.
MONITOR_BULK_READ_FLOOR = int(os.environ.get("MONITOR_BULK_READ_FLOOR", "30"))
MONITOR_BULK_READ_FACTOR = float(os.environ.get("MONITOR_BULK_READ_FACTOR", "3"))
MONITOR_BULK_READ_CEILING = int(os.environ.get("MONITOR_BULK_READ_CEILING", "100"))
# Refused accesses per minute that look like probing ids outside the segment.
MONITOR_DENIED_BURST = int(os.environ.get("MONITOR_DENIED_BURST", "15"))
# Rows (list entries and single objects) one API token may be shown per minute: past its
# own busiest minute of MONITOR_BASELINE_DAYS times MONITOR_BULK_READ_FACTOR (never below
# the floor) is unusual for that integration; past the ceiling is too much for any.
MONITOR_TOKEN_ROWS_FLOOR = int(os.environ.get("MONITOR_TOKEN_ROWS_FLOOR", "500"))
MONITOR_TOKEN_ROWS_PER_MINUTE = int(os.environ.get("MONITOR_TOKEN_ROWS_PER_MINUTE", "5000"))
# Searches per minute, judged inline like bulk reads (own busiest minute x factor, floor,
# ceiling): a search is how a pull finds what to open.
MONITOR_SEARCH_FLOOR = int(os.environ.get("MONITOR_SEARCH_FLOOR", "20"))
MONITOR_SEARCH_CEILING = int(os.environ.get("MONITOR_SEARCH_CEILING", "60"))
# Exports per 24 hours, files and rows, against the user's busiest day of the last
# MONITOR_BASELINE_DAYS times the factor (never below the floor) and a ceiling below the
# export quota: the alert comes before the quota is used up.
MONITOR_EXPORT_FACTOR = float(os.environ.get("MONITOR_EXPORT_FACTOR", "2"))
MONITOR_EXPORT_FILES_FLOOR = int(os.environ.get("MONITOR_EXPORT_FILES_FLOOR", "2"))
MONITOR_EXPORT_FILES_CEILING = int(os.environ.get("MONITOR_EXPORT_FILES_CEILING", "4"))
MONITOR_EXPORT_ROWS_FLOOR = int(os.environ.get("MONITOR_EXPORT_ROWS_FLOOR", "5000"))
MONITOR_EXPORT_ROWS_CEILING = int(os.environ.get("MONITOR_EXPORT_ROWS_CEILING", "100000"))
MONITOR_BASELINE_DAYS = 14
# Sign-in hour: no judgement before this much history (Entra's learning period).
MONITOR_LEARNING_DAYS = 14
MONITOR_LEARNING_SIGN_INS = 10
# Hours of the day are read in this zone (the sign-in heatmap too).
MONITOR_TIME_ZONE = os.environ.get("MONITOR_TIME_ZONE", "UTC")
MONITOR_OTP_GUESSES = 5  # refused codes for one account within the window
MONITOR_SPRAY_USERNAMES = 10  # distinct names refused from one address within the window
MONITOR_WINDOW = timedelta(minutes=10)
# Impossible travel: a MaxMind City database (GeoLite2-City.mmdb or GeoIP2-City.mmdb);
# empty leaves the detector off. Two sign-ins of one user farther apart than the minimum
# distance, at a speed past the limit (an airliner's), raise an alert.
GEOIP_CITY_DB = os.environ.get("GEOIP_CITY_DB", "")
MONITOR_TRAVEL_KMH = int(os.environ.get("MONITOR_TRAVEL_KMH", "900"))
MONITOR_TRAVEL_MIN_KM = int(os.environ.get("MONITOR_TRAVEL_MIN_KM", "500"))
# An open alert of the same pattern for the same user is not raised again this soon.
MONITOR_DEDUPE = timedelta(minutes=30)
# "False positive" silences the same pattern for that user this long.
MONITOR_FALSE_POSITIVE_SUPPRESSION = timedelta(days=int(os.environ.get("MONITOR_FALSE_POSITIVE_DAYS", "14")))
# How long a "step-up on next request", an address block and an export freeze last
# unless reversed.
MONITOR_STEP_UP_TTL = timedelta(hours=12)
MONITOR_BLOCK_TTL = timedelta(hours=int(os.environ.get("MONITOR_BLOCK_HOURS", "24")))
MONITOR_EXPORT_FREEZE_TTL = timedelta(hours=int(os.environ.get("MONITOR_EXPORT_FREEZE_HOURS", "24")))
