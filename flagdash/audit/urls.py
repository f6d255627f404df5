from django.urls import path

from flagdash.audit import views

urlpatterns = [
    path("", views.audit_log, name="audit_log"),
    path("export.csv", views.audit_export, {"fmt": "csv"}, name="audit_export_csv"),
    path("export.json", views.audit_export, {"fmt": "json"}, name="audit_export_json"),
]
