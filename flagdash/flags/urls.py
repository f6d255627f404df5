from django.urls import path

from flagdash.flags import views

app_prefix = "apps/<str:app_key>/"
flag_prefix = app_prefix + "flags/<str:flag_key>/"

urlpatterns = [
    path(app_prefix + "flags/", views.flag_list, name="flag_list"),
    path(app_prefix + "flags/new/", views.flag_create, name="flag_create"),
    path(flag_prefix, views.flag_detail, name="flag_detail"),
    path(flag_prefix + "edit/", views.flag_edit, name="flag_edit"),
    path(flag_prefix + "env/<str:env_key>/toggle/", views.flag_toggle, name="flag_toggle"),
    path(
        flag_prefix + "env/<str:env_key>/values/", views.flag_setting_save, name="flag_setting_save"
    ),
    path(flag_prefix + "attributes/new/", views.attribute_edit, name="flag_attribute_create"),
    path(
        flag_prefix + "attributes/<int:attribute_id>/edit/",
        views.attribute_edit,
        name="flag_attribute_edit",
    ),
    path(
        flag_prefix + "attributes/<int:attribute_id>/delete/",
        views.attribute_delete,
        name="flag_attribute_delete",
    ),
    path(app_prefix + "versions/", views.version_list, name="versions"),
    path(app_prefix + "versions/<str:env_key>/new/", views.version_create, name="version_create"),
    path(
        app_prefix + "versions/<str:env_key>/<int:number>/",
        views.version_detail,
        name="version_detail",
    ),
    path(
        app_prefix + "versions/<str:env_key>/<int:number>/deploy/",
        views.version_deploy,
        name="version_deploy",
    ),
    path(
        app_prefix + "versions/<str:env_key>/<int:number>/rollback/",
        views.version_rollback,
        name="version_rollback",
    ),
    path(
        app_prefix + "deployments/env/<str:env_key>/status/",
        views.environment_rollout_status,
        name="environment_rollout_status",
    ),
    path(
        app_prefix + "rule-attributes/", views.rule_attribute_options, name="rule_attribute_options"
    ),
]
