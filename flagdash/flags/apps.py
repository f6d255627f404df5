from django.apps import AppConfig


class FlagsConfig(AppConfig):
    name = "flagdash.flags"
    label = "flags"
