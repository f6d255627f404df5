from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import path

from flagdash.accounts import views

app_prefix = "settings/applications/<str:app_key>/"

urlpatterns = [
    path("login/", login_not_required(views.LoginView.as_view()), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("settings/", views.settings_page, name="settings"),
    path(
        "settings/applications/new/",
        views.settings_application_create,
        name="settings_application_create",
    ),
    path(
        app_prefix + "environments/new/",
        views.settings_environment_create,
        name="settings_environment_create",
    ),
    path(
        app_prefix + "environments/<str:env_key>/edit/",
        views.settings_environment_edit,
        name="settings_environment_edit",
    ),
    path(
        app_prefix + "environments/<str:env_key>/alarm-secret/",
        views.settings_alarm_secret,
        name="settings_alarm_secret",
    ),
    path(
        "settings/strategies/new/", views.settings_strategy_create, name="settings_strategy_create"
    ),
    path(
        "settings/strategies/<int:pk>/edit/",
        views.settings_strategy_edit,
        name="settings_strategy_edit",
    ),
    path("settings/users/new/", views.settings_user_create, name="settings_user_create"),
    path("settings/users/<int:user_id>/role/", views.settings_user_role, name="settings_user_role"),
]
