"""ASGI entry point: ``uvicorn examples.django_project.asgi:application`` (from the
repository root)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

from moesif_agent.integrations.asgi import FlushOnShutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")

# uvicorn ends a SIGTERM shutdown by re-raising the signal, so exit hooks never run; the
# lifespan shutdown, which Django does not handle itself, is where queued events are sent.
application = FlushOnShutdown(get_asgi_application())
