"""A tiny Django project for tests/integrations/test_django.py (no database, no apps)."""
