"""/livechat/<widget key>/...: the widget's HTTP endpoints, proved by the visitor's token."""

from django.urls import path

from channels_app.livechat import views

app_name = "livechat"

urlpatterns = [
    path("<str:key>/upload/", views.upload_view, name="upload"),
]
