from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    default = True
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"


class PortcullisAdminConfig(admin_apps.AdminConfig):
    """The supervisors' admin is django-otp's OTP-guarded site."""

    default = False
    default_site = "accounts.admin_site.PortcullisAdminSite"
