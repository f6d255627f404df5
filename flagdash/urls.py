from django.urls import include, path

from flagdash.evaluation.urls import api_urlpatterns, settings_urlpatterns

urlpatterns = [
    path("", include("flagdash.core.urls")),
    path("", include("flagdash.accounts.urls")),
    path("settings/tokens/", include("flagdash.accounts.token_urls")),
    path("", include("flagdash.flags.urls")),
    path("", include("flagdash.lifecycle.urls")),
    path("", include("flagdash.deployments.urls")),
    path("", include("flagdash.backends.urls")),
    path("hooks/", include("flagdash.deployments.hook_urls")),
    path("audit/", include("flagdash.audit.urls")),
    path("api/v1/", include("flagdash.lifecycle.api_urls")),  # before the flags' catch-all
    path("api/v1/", include("flagdash.flags.api_urls")),
    path("settings/api-keys/", include(settings_urlpatterns)),
    path("ofrep/", include(api_urlpatterns)),
]
