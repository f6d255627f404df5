from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    name = "flagdash.lifecycle"
    label = "lifecycle"
    verbose_name = "Short-term flag lifecycle"
