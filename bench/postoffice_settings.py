"""Django settings for the django-post_office peer bench (bench/postoffice.py), from the environment it sets:
BENCH_PO_DATABASE (a SQLite file path, or ``postgresql://user@host:port/name``) and BENCH_PO_SMTP_PORT (the
sink on 127.0.0.1, no TLS, no login). post_office keeps its defaults except THREADS_PER_PROCESS, set to the
number of SMTP connections mailroom's worker is given in the same comparison (BENCH_PO_THREADS). A SQLite
file is opened in WAL mode with synchronous=NORMAL, as mailroom opens its own (Django's default would
sync every commit to disk twice over and measure the disk, not post_office)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

_database = os.environ["BENCH_PO_DATABASE"]
if _database.startswith("postgresql://"):
    _url = urlsplit(_database)
    DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": _url.path.lstrip("/"),
                             "USER": _url.username or "postgres", "HOST": _url.hostname or "127.0.0.1",
                             "PORT": str(_url.port or 5432)}}
else:
    # WAL and synchronous=NORMAL, as mailroom opens its SQLite file: the same durability on both sides.
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": _database, "OPTIONS": {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}}}

SECRET_KEY = "bench-only-not-secret"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "post_office"]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
DEFAULT_FROM_EMAIL = "bench@example.org"
EMAIL_BACKEND = "post_office.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ["BENCH_PO_SMTP_PORT"])
EMAIL_USE_TLS = False
EMAIL_USE_SSL = False
POST_OFFICE = {
    "BACKENDS": {"default": "django.core.mail.backends.smtp.EmailBackend"},
    "THREADS_PER_PROCESS": int(os.environ.get("BENCH_PO_THREADS", "4")),
}
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "loggers": {"post_office": {"level": "WARNING"}}}
