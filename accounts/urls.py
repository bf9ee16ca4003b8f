from django.urls import path

from accounts import views
from accounts.devices import views as device_views
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
    path("session/keepalive/", views.session_keepalive_view, name="session_keepalive"),
    path("sso/<slug:slug>/start/", sso_views.sso_start_view, name="sso_start"),
    path("sso/<slug:slug>/callback/", sso_views.sso_callback_view, name="sso_callback"),
    path(
        "sso/<slug:slug>/backchannel-logout/",
        sso_views.sso_backchannel_logout_view,
        name="sso_backchannel_logout",
    ),
    path("devices/", device_views.device_list_view, name="devices"),
    path("devices/<int:device_id>/revoke/", device_views.device_revoke_view, name="device_revoke"),
    path("devices/refresh/", device_views.device_refresh_view, name="device_refresh"),
    path("devices/pending/", device_views.device_pending_view, name="device_pending"),
]
