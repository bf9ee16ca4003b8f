"""SCIM 2.0 endpoints (/api/scim/v2/Users, /Groups): thin DRF views over accounts.scim.services.

Hand-written rather than django-scim2: that library serves one global user model through
Django's session user and its own adapters; here the bearer token names the IdP, reaches
only that IdP's accounts, and deactivation must go through the one session-ending path.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiTokenAuthentication
from accounts.models import ApiToken, ExternalIdentity, IdentityProvider, ScimGroup, User
from accounts.scim import services
from accounts.scim.services import ScimError

SCIM_MEDIA_TYPE = "application/scim+json"
MAX_PAGE = 200


class ScimJSONParser(JSONParser):
    media_type = SCIM_MEDIA_TYPE


class ScimJSONRenderer(JSONRenderer):
    media_type = SCIM_MEDIA_TYPE


class ScimTokenAccess(BasePermission):
    """Only a usable provisioning token of an enabled IdP: no session, no other token."""

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        return (
            isinstance(token, ApiToken)
            and token.is_usable
            and token.scim_provider_id is not None
            and token.scim_provider is not None
            and token.scim_provider.enabled
        )


# SCIM is specified by RFC 7643/7644, not by the Portcullis API's schema.
@extend_schema(exclude=True)
class ScimView(APIView):
    authentication_classes = [ApiTokenAuthentication]
    permission_classes = [ScimTokenAccess]
    parser_classes = [ScimJSONParser, JSONParser]
    renderer_classes = [ScimJSONRenderer, JSONRenderer]

    @property
    def provider(self) -> IdentityProvider:
        token = self.request.auth
        assert isinstance(token, ApiToken) and token.scim_provider is not None  # noqa: S101  # ScimTokenAccess
        return token.scim_provider

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, ScimError):
            return Response(exc.body(), status=exc.status)
        if isinstance(exc, exceptions.APIException):
            response = super().handle_exception(exc)
            response.data = ScimError(response.status_code, str(exc.detail)).body()
            return response
        return super().handle_exception(exc)

    def body(self) -> dict[str, Any]:
        data = self.request.data
        if not isinstance(data, dict):
            raise ScimError(400, "The body must be a JSON object.", "invalidSyntax")
        return data

    def page(self, resources: list[dict[str, Any]], total: int, start: int) -> Response:
        return Response(
            {
                "schemas": [services.LIST_SCHEMA],
                "totalResults": total,
                "startIndex": start,
                "itemsPerPage": len(resources),
                "Resources": resources,
            }
        )

    def paging(self) -> tuple[int, int]:
        try:
            start = max(1, int(self.request.query_params.get("startIndex", 1)))
            count = min(MAX_PAGE, max(0, int(self.request.query_params.get("count", MAX_PAGE))))
        except ValueError:
            raise ScimError(400, "startIndex and count must be numbers.", "invalidValue") from None
        return start, count


class UserResources(ScimView):
    def user_resource(self, user: User) -> dict[str, Any]:
        subject = ExternalIdentity.objects.filter(provider=self.provider, user=user).values_list(
            "subject", flat=True
        )[0]
        location = self.request.build_absolute_uri(f"/api/scim/v2/Users/{user.pk}")
        return services.user_resource(user, subject, location)


class UsersView(UserResources):
    FILTERS = frozenset({"userName", "externalId"})

    def get(self, request: Request) -> Response:
        users = services.provisioned_users(self.provider).order_by("pk")
        condition = services.equality_filter(request.query_params.get("filter"), self.FILTERS)
        if condition is not None:
            attribute, value = condition
            if attribute == "userName":
                users = users.filter(username__iexact=value)
            else:
                users = users.filter(
                    pk__in=ExternalIdentity.objects.filter(provider=self.provider, subject=value).values(
                        "user_id"
                    )
                )
        start, count = self.paging()
        window = list(users[start - 1 : start - 1 + count])
        return self.page([self.user_resource(u) for u in window], users.count(), start)

    def post(self, request: Request) -> Response:
        user = services.user_create(provider=self.provider, data=self.body(), request=request._request)
        return Response(self.user_resource(user), status=201)


class UserView(UserResources):
    def get(self, request: Request, user_id: str) -> Response:
        return Response(self.user_resource(services.user_get(self.provider, user_id)))

    def put(self, request: Request, user_id: str) -> Response:
        user = services.user_get(self.provider, user_id)
        user = services.user_update(
            provider=self.provider, user=user, attributes=self.body(), request=request._request
        )
        return Response(self.user_resource(user))

    def patch(self, request: Request, user_id: str) -> Response:
        user = services.user_get(self.provider, user_id)
        attributes = services.patch_to_attributes(self.body().get("Operations"))
        user = services.user_update(
            provider=self.provider, user=user, attributes=attributes, request=request._request
        )
        return Response(self.user_resource(user))

    def delete(self, request: Request, user_id: str) -> Response:
        # Accounts are deactivated, never deleted: the audit trail refers to them.
        user = services.user_get(self.provider, user_id)
        services.user_update(
            provider=self.provider, user=user, attributes={"active": False}, request=request._request
        )
        return Response(status=204)


class GroupResources(ScimView):
    def group_resource(self, group: ScimGroup) -> dict[str, Any]:
        return services.group_resource(
            group, self.request.build_absolute_uri(f"/api/scim/v2/Groups/{group.pk}")
        )


class GroupsView(GroupResources):
    FILTERS = frozenset({"displayName", "externalId"})

    def get(self, request: Request) -> Response:
        groups = ScimGroup.objects.filter(provider=self.provider).order_by("pk").prefetch_related("members")
        condition = services.equality_filter(request.query_params.get("filter"), self.FILTERS)
        if condition is not None:
            attribute, value = condition
            field = "display_name" if attribute == "displayName" else "external_id"
            groups = groups.filter(**{field: value})
        start, count = self.paging()
        window = list(groups[start - 1 : start - 1 + count])
        return self.page([self.group_resource(g) for g in window], groups.count(), start)

    def post(self, request: Request) -> Response:
        group = services.group_create(provider=self.provider, data=self.body(), request=request._request)
        return Response(self.group_resource(group), status=201)


class GroupView(GroupResources):
    def get(self, request: Request, group_id: str) -> Response:
        return Response(self.group_resource(services.group_get(self.provider, group_id)))

    def patch(self, request: Request, group_id: str) -> Response:
        group = services.group_get(self.provider, group_id)
        group = services.group_patch(
            provider=self.provider,
            group=group,
            operations=self.body().get("Operations"),
            request=request._request,
        )
        return Response(self.group_resource(group))

    def delete(self, request: Request, group_id: str) -> Response:
        group = services.group_get(self.provider, group_id)
        services.group_delete(provider=self.provider, group=group, request=request._request)
        return Response(status=204)
