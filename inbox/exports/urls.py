from django.urls import path

from inbox.exports import views

app_name = "exports"

urlpatterns = [
    path("", views.exports_view, name="list"),
    path("<int:export_id>/progress/", views.export_progress_view, name="progress"),
    path("<int:export_id>/download/", views.export_download_view, name="download"),
]
