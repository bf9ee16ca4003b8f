"""The inbox app's Celery tasks, for autodiscovery: each package keeps its own."""

from inbox.exports.tasks import export_run, exports_purge

__all__ = ["export_run", "exports_purge"]
