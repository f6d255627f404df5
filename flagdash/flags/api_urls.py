"""URLs of the JSON API, mounted at /api/v1/ (see docs/api.md)."""

from django.urls import path, re_path

from flagdash.flags import api
from flagdash.flags.api_base import resource

app = "apps/<str:app_key>/"
flag = app + "flags/<str:flag_key>/"
env = app + "environments/<str:env_key>/"
setting = flag + "environments/<str:env_key>/"
version = env + "versions/<int:number>/"

urlpatterns = [
    path("", resource(GET=api.api_root), name="api_root"),
    path("apps/", resource(GET=api.apps_list), name="api_apps"),
    path(app + "environments/", resource(GET=api.environments_list), name="api_environments"),
    path(app + "flags/", resource(GET=api.flags_list, POST=api.flag_create), name="api_flags"),
    path(flag, resource(GET=api.flag_detail, PATCH=api.flag_update), name="api_flag"),
    path(flag + "archive/", resource(POST=api.flag_archive), name="api_flag_archive"),
    path(flag + "restore/", resource(POST=api.flag_restore), name="api_flag_restore"),
    path(flag + "attributes/", resource(POST=api.attribute_create), name="api_attributes"),
    path(
        flag + "attributes/<str:name>/",
        resource(PATCH=api.attribute_update, DELETE=api.attribute_delete),
        name="api_attribute",
    ),
    path(setting, resource(GET=api.setting_detail, PUT=api.setting_update), name="api_setting"),
    path(setting + "toggle/", resource(POST=api.setting_toggle), name="api_setting_toggle"),
    path(
        env + "versions/",
        resource(GET=api.versions_list, POST=api.version_create),
        name="api_versions",
    ),
    path(version, resource(GET=api.version_detail), name="api_version"),
    path(version + "diff/", resource(GET=api.version_diff), name="api_version_diff"),
    path(version + "deploy/", resource(POST=api.version_deploy), name="api_version_deploy"),
    path(version + "rollback/", resource(POST=api.version_rollback), name="api_version_rollback"),
    path("deployments/<int:pk>/", resource(GET=api.deployment_detail), name="api_deployment"),
    path(
        "deployments/<int:pk>/rollback/",
        resource(POST=api.deployment_rollback),
        name="api_deployment_rollback",
    ),
    path(
        "deployments/<int:pk>/cancel/",
        resource(POST=api.deployment_cancel),
        name="api_deployment_cancel",
    ),
    path(
        "deployments/<int:pk>/retry/",
        resource(POST=api.deployment_retry),
        name="api_deployment_retry",
    ),
    re_path(
        r"^(?P<rest>.*)$",
        resource(**dict.fromkeys(("GET", "POST", "PUT", "PATCH", "DELETE"), api.unknown_endpoint)),
        name="api_unknown",
    ),
]
