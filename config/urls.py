from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from accounts.devices.api import DeviceAttestView
from accounts.views import health_view
from config.metrics import metrics_view
from inbox.api import UnknownEndpointView

# Under /api/ these answer JSON; elsewhere the site's styled pages (templates/4xx.html, 500.html).
handler400 = "config.api.bad_request"
handler403 = "config.api.permission_denied"
handler404 = "config.api.page_not_found"
handler500 = "config.api.server_error"

urlpatterns = [
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("healthz", health_view, name="health"),
    # Prometheus scrapes with a bearer token (config.metrics); no session, no second factor.
    path("metrics", metrics_view, name="metrics"),
    # Provider webhooks: each proves its origin by signature (see channels_app.webhooks).
    path("hooks/", include("channels_app.webhooks.urls")),
    # The chat widget's uploads: each proves the visitor by their signed token.
    path("livechat/", include("channels_app.livechat.urls")),
    # Integrations push into their API channel with a token (see channels_app.api).
    path("api/v1/channels/", include("channels_app.api.urls")),
    path("api/v1/devices/attest", DeviceAttestView.as_view(), name="device-attest"),
    path("api/v1/", include("inbox.api_urls")),
    # The company IdP provisions accounts with its SCIM token (see accounts.scim).
    path("api/scim/v2/", include("accounts.scim.urls")),
    # Served with SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]: a verified session or a token.
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Any other path under /api/ (one with a newline or another control character too:
    # the pattern has no `.` that would stop there) is a JSON 404, not the site's HTML one.
    re_path(r"^api/", UnknownEndpointView.as_view(), name="api-unknown"),
    # Governed exports: the one way data leaves in bulk (inbox.exports).
    path("exports/", include("inbox.exports.urls")),
    # Time-boxed access outside one's segment, decided by a supervisor (inbox.breakglass).
    path("breakglass/", include("inbox.breakglass.urls")),
    path("", include("inbox.urls")),
]
