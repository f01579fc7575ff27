"""Settings of the example project: no database, no apps, the agent first in MIDDLEWARE."""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "examples.django_project.urls"
WSGI_APPLICATION = "examples.django_project.wsgi.application"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, Any] = {}
USE_TZ = True

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
if os.environ.get("EXAMPLE_INSTRUMENT", "1") != "0":
    # First, so that it also sees the responses the other middleware produce.
    MIDDLEWARE.insert(0, "moesif_agent.integrations.django.MoesifMiddleware")

# moesif-agent options (snake_case; the reference agent's MOESIF_MIDDLEWARE with UPPERCASE
# keys works too). application_id and base_uri come from MOESIF_APPLICATION_ID and
# MOESIF_BASE_URI here; callbacks such as identify_user(request, response) go in this dict.
MOESIF: dict[str, Any] = {}
