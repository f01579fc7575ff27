from __future__ import annotations

from django.urls import path, re_path

from . import views

urlpatterns = [
    path("items/<int:item_id>", views.item),
    path("async/items/<int:item_id>", views.aitem),
    path("echo", views.echo),
    path("async/echo", views.aecho),
    path("form", views.form),
    path("upload", views.upload),
    path("chunks", views.chunks),
    path("stream", views.stream),
    path("async/stream", views.astream),
    path("file", views.file),
    path("error", views.error),
    path("cookies", views.cookies),
    path("whoami", views.whoami),
    path("async/noop", views.anoop),
    re_path(r"^legacy/(?P<slug>[a-z]+)$", views.legacy),
]
