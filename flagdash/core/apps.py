from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "flagdash.core"
    label = "core"
