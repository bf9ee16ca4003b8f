"""Impossible travel: a real City database file (written here with mmdb-writer) read by
the real geoip2 reader; the sign-ins come through the real views, judged on Celery."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pyotp
import pytest
from django.test import Client
from django.utils import timezone
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from accounts import roles
from accounts.models import User
from audit.alerts.models import Alert, AlertKind, AlertSeverity, ResponseKind
from audit.detectors import runner, signin
from audit.models import SecurityEvent
from tests.audit.monitoring import respond
from tests.audit.test_signin_detectors import sign_in, wait_for
from tests.channels.conftest import celery_worker  # noqa: F401  # fixture used by name

BERLIN, MUNICH, SYDNEY = "81.10.0.7", "85.20.0.7", "1.128.0.7"
UNKNOWN, PRIVATE = "8.8.8.8", "10.1.2.3"
PLACES = [
    ("81.10.0.0/16", "Berlin", "DE", 52.520, 13.405),
    ("85.20.0.0/16", "Munich", "DE", 48.137, 11.575),
    ("1.128.0.0/16", "Sydney", "AU", -33.869, 151.209),
]


pytestmark = pytest.mark.usefixtures("monitoring_keys_fresh")


@pytest.fixture
def city_db(tmp_path: Path, settings: Any) -> Path:
    """Three cities, as a GeoLite2-City file lays them out; the setting points at it."""
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-City", languages=["en"], description="test")
    for network, city, country, latitude, longitude in PLACES:
        writer.insert_network(
            IPSet([network]),
            {
                "city": {"names": {"en": city}},
                "country": {"iso_code": country, "names": {"en": country}},
                "location": {"latitude": latitude, "longitude": longitude, "accuracy_radius": 20},
            },
        )
    path = tmp_path / "GeoLite2-City.mmdb"
    writer.to_db_file(str(path))
    settings.GEOIP_CITY_DB = str(path)
    return path


def sign_in_at(user: User, address: str, hours_ago: float) -> SecurityEvent:
    at = timezone.now() - timedelta(hours=hours_ago)
    with mock.patch("django.utils.timezone.now", return_value=at):
        return SecurityEvent.objects.create(
            kind=SecurityEvent.Kind.OTP_SUCCEEDED, user=user, ip_address=address
        )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker", "role_groups")
def test_berlin_then_sydney_an_hour_later_alerts_and_asks_for_a_fresh_factor(
    city_db: Path, make_user: Callable[..., User], totp: Callable[[User], pyotp.TOTP]
) -> None:
    respond(AlertKind.IMPOSSIBLE_TRAVEL, ResponseKind.STEP_UP, ResponseKind.NOTIFY)
    agent = make_user(roles.AGENT, username="alice")
    earlier = sign_in_at(agent, BERLIN, hours_ago=1)
    thief = Client(REMOTE_ADDR=SYDNEY)
    sign_in(thief, agent, totp(agent).now())

    alert = wait_for(AlertKind.IMPOSSIBLE_TRAVEL, user=agent)
    assert alert.severity == AlertSeverity.MEDIUM
    assert alert.ip_address == SYDNEY
    assert alert.pattern == "travel:DE>AU"
    evidence = alert.evidence
    assert (evidence["from"]["city"], evidence["from"]["ip_address"]) == ("Berlin", BERLIN)
    assert (evidence["to"]["city"], evidence["to"]["country"]) == ("Sydney", "AU")
    assert evidence["from"]["at"] == earlier.created_at.isoformat()
    assert 16000 < evidence["distance_km"] < 16200  # Berlin to Sydney: 16,090 km
    assert 0.99 < evidence["hours"] < 1.05
    assert evidence["speed_kmh"] > 15000
    assert alert.baseline == {"max_speed_kmh": 900, "min_distance_km": 500}
    assert {r.response for r in alert.responses.all()} == {ResponseKind.STEP_UP, ResponseKind.NOTIFY}
    assert thief.get("/").status_code == 403  # a fresh second factor first


@pytest.mark.django_db
def test_berlin_then_munich_three_hours_later_is_a_train_ride(
    city_db: Path, make_user: Callable[..., User]
) -> None:
    respond(AlertKind.IMPOSSIBLE_TRAVEL, ResponseKind.NOTIFY)
    agent = make_user(roles.AGENT)
    sign_in_at(agent, BERLIN, hours_ago=3)
    sign_in_at(agent, MUNICH, hours_ago=0)
    runner.detectors_run()
    assert not Alert.objects.filter(kind=AlertKind.IMPOSSIBLE_TRAVEL).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("address", [UNKNOWN, PRIVATE])
def test_an_address_the_database_cannot_place_raises_nothing(
    city_db: Path, make_user: Callable[..., User], address: str
) -> None:
    respond(AlertKind.IMPOSSIBLE_TRAVEL, ResponseKind.NOTIFY)
    agent = make_user(roles.AGENT)
    sign_in_at(agent, BERLIN, hours_ago=1)
    sign_in_at(agent, address, hours_ago=0.5)
    runner.detectors_run()
    assert signin.place_of(address) is None
    assert not Alert.objects.filter(kind=AlertKind.IMPOSSIBLE_TRAVEL).exists()
    # Nor does it hide the last place known: Sydney is compared with Berlin.
    sign_in_at(agent, SYDNEY, hours_ago=0)
    runner.detectors_run()
    alert = Alert.objects.get(kind=AlertKind.IMPOSSIBLE_TRAVEL, user=agent)
    assert alert.evidence["from"]["ip_address"] == BERLIN


@pytest.mark.django_db
def test_without_a_configured_database_the_detector_does_not_run(
    settings: Any, make_user: Callable[..., User], django_assert_num_queries: Any
) -> None:
    settings.GEOIP_CITY_DB = ""
    respond(AlertKind.IMPOSSIBLE_TRAVEL, ResponseKind.NOTIFY)
    agent = make_user(roles.AGENT)
    sign_in_at(agent, BERLIN, hours_ago=1)
    jump = sign_in_at(agent, SYDNEY, hours_ago=0)
    signin._city_reader.cache_clear()
    with django_assert_num_queries(0):
        assert signin.ImpossibleTravel().detect([jump]) == []
    runner.detectors_run()
    assert signin._city_reader.cache_info().misses == 0  # no database was ever opened
    assert not Alert.objects.filter(kind=AlertKind.IMPOSSIBLE_TRAVEL).exists()


@pytest.mark.django_db
def test_a_missing_database_file_turns_the_detector_off_not_the_run(
    settings: Any, tmp_path: Path, make_user: Callable[..., User]
) -> None:
    settings.GEOIP_CITY_DB = str(tmp_path / "absent.mmdb")
    respond(AlertKind.NEW_DEVICE, ResponseKind.NOTIFY)
    agent = make_user(roles.AGENT)
    sign_in_at(agent, BERLIN, hours_ago=1)
    sign_in_at(agent, SYDNEY, hours_ago=0)
    for device in (1, 2):
        SecurityEvent.objects.create(
            kind=SecurityEvent.Kind.DEVICE_REGISTERED, user=agent, detail={"device": device}
        )
    runner.detectors_run()
    assert Alert.objects.filter(kind=AlertKind.NEW_DEVICE, user=agent).exists()
    assert not Alert.objects.filter(kind=AlertKind.IMPOSSIBLE_TRAVEL).exists()
