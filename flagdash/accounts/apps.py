from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "flagdash.accounts"
    label = "accounts"

    def ready(self) -> None:
        from flagdash.accounts import signals  # noqa: F401  (connects the auth receivers)
