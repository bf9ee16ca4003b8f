"""Detectors: what turns the trail into alerts.

- `inline`: bulk reads, search bursts, refused-access bursts and token read volume,
  judged in the request path against per-minute Redis counters (they protect data, so
  they answer before the next page);
- `exports`: export volume per 24 hours, judged in the request that asks for an export;
- `sockets`: an agent socket following inboxes new to this user, judged on Celery;
- `signin`: the sign-in detectors (unusual hour for this user, new network, impossible
  travel with a GeoIP database, second-factor guessing, password spraying), run on Celery
  over new security events by `runner`;
- `baselines`: the per-user read and search baselines the inline detector compares with,
  refreshed on Celery from the access log.

Every detector states its evidence and the baseline it compared it with (audit.alerts).
"""
