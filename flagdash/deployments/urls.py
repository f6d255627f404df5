from django.urls import path

from flagdash.deployments import views

app_prefix = "apps/<str:app_key>/"
deployment_prefix = app_prefix + "deployments/<int:pk>/"

urlpatterns = [
    path(app_prefix + "deployments/", views.deployment_list, name="deployments"),
    path(deployment_prefix, views.deployment_detail, name="deployment_detail"),
    path(deployment_prefix + "rollback/", views.deployment_rollback, name="deployment_rollback"),
    path(deployment_prefix + "cancel/", views.deployment_cancel, name="deployment_cancel"),
    path(deployment_prefix + "retry/", views.deployment_retry, name="deployment_retry"),
    path(app_prefix + "rollbacks/", views.rollback_list, name="rollbacks"),
]
