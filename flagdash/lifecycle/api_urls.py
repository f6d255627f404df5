"""URLs of the lifecycle's JSON API, mounted at /api/v1/ before the flags' (see docs/api.md)."""

from django.urls import path

from flagdash.flags.api_base import resource
from flagdash.lifecycle import api

app = "apps/<str:app_key>/"

urlpatterns = [
    path(
        app + "code-references/",
        resource(GET=api.code_references_get, POST=api.code_references_post),
        name="api_code_references",
    ),
    path(app + "short-term/", resource(GET=api.short_term_list), name="api_short_term"),
    path(
        app + "short-term/archive/",
        resource(POST=api.short_term_archive),
        name="api_short_term_archive",
    ),
    path(
        app + "short-term/restore/",
        resource(POST=api.short_term_restore),
        name="api_short_term_restore",
    ),
    path("short-term/digest/", resource(GET=api.digest_get), name="api_short_term_digest"),
]
