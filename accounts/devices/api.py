"""POST /api/v1/devices/attest: the page hands over its device's posture attestation."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.devices import selectors, services
from accounts.devices.attestation import AttestationRefused, attestation_verify
from accounts.models import BrowserDevice, User
from audit.services import Kind, Severity, security_event_record
from inbox.api import BAD_REQUEST, ERRORS


class AttestationSerializer(serializers.Serializer[Any]):
    attestation = serializers.CharField(max_length=8192, trim_whitespace=True)


class AttestationResultSerializer(serializers.Serializer[Any]):
    trust = serializers.ChoiceField(choices=BrowserDevice.Trust.choices)
    expires_at = serializers.DateTimeField()


class DeviceAttestView(APIView):
    """For the session's own device only: an API token has no device to attest."""

    @extend_schema(
        operation_id="devices_attest",
        request=AttestationSerializer,
        responses={200: AttestationResultSerializer, **BAD_REQUEST, **ERRORS},
        description="Hand over a signed posture attestation (a JWT from the company's device "
        "management, naming this session's device key in cnf.jkt); answers the device's new trust.",
    )
    def post(self, request: Request) -> Response:
        user: User = request.user  # type: ignore[assignment]  # VerifiedAccess admitted a user
        device_id = request.session.get(services.DEVICE_ID_KEY) if request.auth is None else None
        device = selectors.own_device(user=user, device_id=device_id) if device_id else None
        if device is None or device.binding != BrowserDevice.Binding.KEY:
            return Response(
                {"detail": "Only a session bound to a device key can attest it.", "code": "device_required"},
                status=403,
            )
        body = AttestationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            posture, expires_at = attestation_verify(
                body.validated_data["attestation"], thumbprint=device.key_thumbprint
            )
        except AttestationRefused as refused:
            security_event_record(
                kind=Kind.DEVICE_ATTESTATION_REFUSED,
                request=request._request,
                severity=Severity.WARNING,
                detail={"device": device.pk, "code": refused.code},
            )
            return Response(
                {"detail": "The attestation was not accepted.", "code": f"attestation_{refused.code}"},
                status=400,
            )
        services.device_posture_record(
            device=device, posture=posture, expires_at=expires_at, request=request._request
        )
        return Response({"trust": device.trust_level, "expires_at": expires_at.isoformat()})
