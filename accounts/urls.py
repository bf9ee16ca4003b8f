from django.urls import path

from accounts import views

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
]
