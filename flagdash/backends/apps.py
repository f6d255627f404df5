from django.apps import AppConfig


class BackendsConfig(AppConfig):
    name = "flagdash.backends"
    label = "backends"
