"""Detectors: what turns the trail into alerts.

- `inline`: bulk reads and refused-access bursts, judged in the request path against
  per-minute Redis counters (they protect data, so they answer before the next page);
- `signin`: the sign-in detectors (unusual hour for this user, new network, second-factor
  guessing, password spraying), run on Celery over new security events by `runner`;
- `baselines`: the per-user read baselines the inline detector compares with, refreshed
  on Celery from the access log.

Every detector states its evidence and the baseline it compared it with (audit.alerts).
"""
