from django.urls import path

from inbox import api

app_name = "api"

urlpatterns = [
    path("inboxes/", api.InboxListView.as_view(), name="inbox-list"),
    path("conversations/", api.ConversationListView.as_view(), name="conversation-list"),
    path(
        "conversations/<int:conversation_id>/",
        api.ConversationDetailView.as_view(),
        name="conversation-detail",
    ),
    path(
        "conversations/<int:conversation_id>/messages/",
        api.ConversationMessagesView.as_view(),
        name="conversation-messages",
    ),
    path(
        "conversations/<int:conversation_id>/notes/",
        api.ConversationNotesView.as_view(),
        name="conversation-notes",
    ),
    path(
        "conversations/<int:conversation_id>/messages/<int:message_id>/reveal/",
        api.MessageRevealView.as_view(),
        name="message-reveal",
    ),
    path("contacts/<int:contact_id>/", api.ContactDetailView.as_view(), name="contact-detail"),
    path("contacts/<int:contact_id>/reveal/", api.ContactRevealView.as_view(), name="contact-reveal"),
    # Any other path, a non-numeric id among them, falls through to config.urls' /api/
    # catch-all: a JSON 404.
]
