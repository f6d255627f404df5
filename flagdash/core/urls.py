from django.urls import path

from flagdash.core import views

urlpatterns = [
    path("", views.home, name="home"),
    path("switch/", views.switch_application, name="switch_application"),
    path("healthz", views.healthz, name="healthz"),
]
