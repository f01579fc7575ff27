"""Framework middleware: ``wsgi``, ``flask``, ``asgi``, ``starlette``, ``django``."""
