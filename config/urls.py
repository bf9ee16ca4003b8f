from django.contrib import admin
from django.urls import include, path

from accounts.views import health_view

urlpatterns = [
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("healthz", health_view, name="health"),
    path("", include("inbox.urls")),
]
