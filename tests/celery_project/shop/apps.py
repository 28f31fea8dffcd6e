from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"

    def ready(self):
        from . import receivers  # noqa: F401 - connects the task signal receivers
