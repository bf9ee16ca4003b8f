"""The read baselines the inline detector compares with: each user's busiest minute of
conversations and contacts opened, and of searches, and each API token's busiest minute of
rows shown, over MONITOR_BASELINE_DAYS, from the access log, kept in Redis beside the
counters so a request reads both in one round trip."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from audit.detectors.inline import (
    READ_TYPES,
    SEARCH_PREFIX,
    SEARCHES,
    baseline_key,
    counters,
    token_baseline_key,
)

_PEAKS = """
SELECT user_id, object_type, max(n) FROM (
    SELECT user_id, object_type, date_trunc('minute', created_at) AS minute, count(DISTINCT object_id) AS n
    FROM audit_accessevent
    WHERE created_at >= %s AND allowed AND action = 'view' AND user_id IS NOT NULL
      AND object_id IS NOT NULL AND object_type = ANY(%s)
    GROUP BY 1, 2, 3
) per_minute GROUP BY 1, 2
UNION ALL
SELECT user_id, %s, max(n) FROM (
    SELECT user_id, date_trunc('minute', created_at) AS minute, count(*) AS n
    FROM audit_accessevent
    WHERE created_at >= %s AND allowed AND action LIKE %s AND user_id IS NOT NULL
    GROUP BY 1, 2
) searches_per_minute GROUP BY 1
"""

# Rows a token was shown, counted as the inline detector counts them (inline._rows_read):
# one per object opened, N per "list:N" or "search:N" page.
_INTEGRATION_PEAKS = """
SELECT api_token_id, max(n) FROM (
    SELECT api_token_id, date_trunc('minute', created_at) AS minute,
           sum(CASE WHEN action = 'view' THEN 1
                    WHEN action ~ '^(list|search):[0-9]+$' THEN split_part(action, ':', 2)::bigint
                    ELSE 0 END) AS n
    FROM audit_accessevent
    WHERE created_at >= %s AND allowed AND api_token_id IS NOT NULL
    GROUP BY 1, 2
) per_minute GROUP BY 1
"""


def read_baselines_refresh() -> int:
    """Recompute every user's and token's peaks; returns how many users have one."""
    since = timezone.now() - timedelta(days=settings.MONITOR_BASELINE_DAYS)
    with connection.cursor() as cursor:
        cursor.execute(_PEAKS, [since, list(READ_TYPES), SEARCHES, since, f"{SEARCH_PREFIX}%"])
        rows = cursor.fetchall()
        cursor.execute(_INTEGRATION_PEAKS, [since])
        token_peaks = cursor.fetchall()
    peaks: dict[int, dict[str, int]] = {}
    for user_id, what, peak in rows:
        peaks.setdefault(user_id, {})[READ_TYPES.get(what, what)] = peak
    # Two hourly runs' worth: a missed run leaves the old baseline, not none.
    ttl = 2 * 3600
    counters().put(
        {
            **{
                baseline_key(user): ",".join(f"{what}={n}" for what, n in sorted(p.items()))
                for user, p in peaks.items()
            },
            **{token_baseline_key(token): str(peak) for token, peak in token_peaks if peak},
        },
        ttl,
    )
    return len(peaks)
