"""Webhooks that authenticate by signature, not by session (mounted at /hooks/)."""

from django.urls import path

from flagdash.deployments import hooks

urlpatterns = [
    path("alarms/<str:app_key>/<str:env_key>/", hooks.alarm_webhook, name="alarm_webhook"),
]
