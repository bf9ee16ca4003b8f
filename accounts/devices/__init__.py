"""Verified devices: a key pair made in the browser, the sessions bound to it, and the
trust level that policy rules read. See docs/devices.md."""
