from django.urls import path

from inbox import views

app_name = "inbox"

urlpatterns = [
    path("", views.inbox_view, name="list"),
    path("conversations/bulk/", views.bulk_view, name="bulk"),
    path("conversations/<int:conversation_id>/", views.conversation_view, name="conversation"),
    path("conversations/<int:conversation_id>/reply/", views.reply_view, name="reply"),
    path("conversations/<int:conversation_id>/note/", views.note_view, name="note"),
    path("conversations/<int:conversation_id>/assign/", views.assign_view, name="assign"),
    path("conversations/<int:conversation_id>/status/", views.status_view, name="status"),
    path("conversations/<int:conversation_id>/priority/", views.priority_view, name="priority"),
    path("conversations/<int:conversation_id>/labels/", views.labels_view, name="labels"),
    path(
        "conversations/<int:conversation_id>/attachments/<int:attachment_id>/",
        views.attachment_view,
        name="attachment",
    ),
]
