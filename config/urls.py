from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from accounts.views import health_view

urlpatterns = [
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("healthz", health_view, name="health"),
    # Provider webhooks: each proves its origin by signature (see channels_app.webhooks).
    path("hooks/", include("channels_app.hooks_urls")),
    # The chat widget's uploads: each proves the visitor by their signed token.
    path("livechat/", include("channels_app.livechat_urls")),
    path("api/v1/", include("inbox.api_urls")),
    # Served with SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]: a verified session or a token.
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("", include("inbox.urls")),
]
