from auditlog.apps import AuditlogConfig
from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django_otp.plugins.otp_static import apps as otp_static_apps
from django_otp.plugins.otp_totp import apps as otp_totp_apps


class AccountsConfig(AppConfig):
    default = True
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"


class PortcullisAdminConfig(admin_apps.AdminConfig):
    """The supervisors' admin is django-otp's OTP-guarded site."""

    default = False
    default_site = "accounts.admin_site.PortcullisAdminSite"


# The supervision console names apps as its readers know them; the labels (and so the
# tables and migrations) stay the libraries' own.
class AuthenticatorAppsConfig(otp_totp_apps.DefaultConfig):
    verbose_name = "Second factors: authenticator apps"


class BackupCodesConfig(otp_static_apps.DefaultConfig):
    verbose_name = "Second factors: backup codes"


class ChangeHistoryConfig(AuditlogConfig):
    verbose_name = "Change history"
