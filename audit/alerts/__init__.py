"""Alerts and automated responses.

A detector (`audit.detectors`) raises an alert with its evidence and the baseline it was
compared with; the response policies configured in the admin decide what happens, each
response off, in monitor mode (recorded as what would have been done) or enforced. Every
response taken can be reversed; every step is a security event, so it is hash-chained.
"""
