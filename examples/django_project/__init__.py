"""The Django example project, instrumented by moesif-agent.

Configured by the environment: MOESIF_APPLICATION_ID and MOESIF_BASE_URI (for instance the
local collector, http://127.0.0.1:8787). EXAMPLE_INSTRUMENT=0 serves the bare project.
From the repository root::

    gunicorn examples.django_project.wsgi
    uvicorn examples.django_project.asgi:application
    python examples/django_project/manage.py runserver
"""
