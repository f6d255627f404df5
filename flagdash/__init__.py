"""flagdash: a self-hosted dashboard for feature-flag operations."""

from flagdash.celery import app as celery_app

__all__ = ("celery_app",)
