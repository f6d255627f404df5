from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "flagdash.audit"
    label = "audit"
