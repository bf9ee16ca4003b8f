from django.urls import path

from inbox.breakglass import views

app_name = "breakglass"

urlpatterns = [path("", views.breakglass_view, name="request")]
