from django.urls import path

from flagdash.backends import views

urlpatterns = [
    path(
        "settings/applications/<str:app_key>/environments/<str:env_key>/backend/",
        views.environment_backend,
        name="environment_backend",
    ),
]
