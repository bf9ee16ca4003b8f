"""Governed exports: the only way data leaves the platform in bulk (docs/exports.md)."""
