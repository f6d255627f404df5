from django.urls import path, re_path

from flagdash.evaluation import api, views

# Token-authenticated API for applications (mounted at /ofrep/). Every address under it answers
# JSON: a flag key with a slash is a flag that does not exist, anything else a JSON 404.
# [\s\S], not "." (nor <path:…>): a line break (%0A) in an address is a character like any other,
# or the address would fall through to Django's HTML 404.
api_urlpatterns = [
    re_path(
        r"^v1/evaluate/flags/(?P<key>[\s\S]+)\Z", api.evaluate_flag, name="ofrep_evaluate_flag"
    ),
    path("v1/evaluate/flags", api.evaluate_flags, name="ofrep_evaluate_flags"),
    path("v1/flagd/flags.json", api.flagd_export, name="ofrep_flagd_export"),
    re_path(r"^(?P<rest>[\s\S]*)\Z", api.unknown_endpoint, name="ofrep_unknown"),
]

# Settings pages for people (mounted at /settings/api-keys/).
settings_urlpatterns = [
    path("", views.api_key_list, name="api_keys"),
    path("<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
]
