from django.urls import path

from accounts.scim import views

app_name = "scim"

urlpatterns = [
    path("Users", views.UsersView.as_view(), name="users"),
    path("Users/<str:user_id>", views.UserView.as_view(), name="user"),
    path("Groups", views.GroupsView.as_view(), name="groups"),
    path("Groups/<str:group_id>", views.GroupView.as_view(), name="group"),
]
