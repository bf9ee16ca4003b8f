from django.urls import path

from accounts import views
from accounts.devices import views as device_views
from accounts.passkeys import views as passkey_views
from accounts.sso import views as sso_views

app_name = "accounts"

urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("verify/", views.otp_view, name="otp"),
    path("enroll/", views.enroll_view, name="enroll"),
    path("activate/", views.activate_view, name="activate"),
    path("logout/", views.logout_view, name="logout"),
    path("logout/everywhere/", views.logout_everywhere_view, name="logout_everywhere"),
    path("security/", views.security_view, name="security"),
    path("step-up/", views.step_up_view, name="step_up"),
    path("passkeys/add/", passkey_views.passkey_add_view, name="passkey_add"),
    path(
        "passkeys/registration-options/",
        passkey_views.passkey_registration_options_view,
        name="passkey_registration_options",
    ),
    path(
        "passkeys/assertion-options/",
        passkey_views.passkey_assertion_options_view,
        name="passkey_assertion_options",
    ),
    path("passkeys/<int:passkey_id>/remove/", passkey_views.passkey_remove_view, name="passkey_remove"),
    path("session/keepalive/", views.session_keepalive_view, name="session_keepalive"),
    path("sso/<slug:slug>/start/", sso_views.sso_start_view, name="sso_start"),
    path("sso/<slug:slug>/callback/", sso_views.sso_callback_view, name="sso_callback"),
    path("sso/<slug:slug>/step-up/", sso_views.sso_step_up_view, name="sso_step_up"),
    path(
        "sso/<slug:slug>/backchannel-logout/",
        sso_views.sso_backchannel_logout_view,
        name="sso_backchannel_logout",
    ),
    path("devices/", device_views.device_list_view, name="devices"),
    path("devices/<int:device_id>/revoke/", device_views.device_revoke_view, name="device_revoke"),
    path("devices/refresh/", device_views.device_refresh_view, name="device_refresh"),
    path("devices/pending/", device_views.device_pending_view, name="device_pending"),
    path("dbsc/register/", device_views.dbsc_register_view, name="dbsc_register"),
    path("dbsc/refresh/", device_views.dbsc_refresh_view, name="dbsc_refresh"),
]
