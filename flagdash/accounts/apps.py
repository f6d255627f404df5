from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "flagdash.accounts"
    label = "accounts"
