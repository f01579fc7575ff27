from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("items/<item_id>", views.get_item),
    path("items", views.create_item),
    path("stream", views.stream),
    path("health", views.health),
    path("error", views.error),
]
