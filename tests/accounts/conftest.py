from __future__ import annotations

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def fresh_login_throttle() -> None:
    # The sign-in throttle counts failures in the cache (Redis under test): failures one test
    # made must not slow or block the next.
    cache.clear()
