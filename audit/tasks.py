"""Sealing and checkpointing: thin wrappers over the chain services."""

from __future__ import annotations

from celery import shared_task

from audit.chain import services


@shared_task(name="audit.chain_seal", ignore_result=True)
def chain_seal() -> int:
    return services.chain_seal()


@shared_task(name="audit.checkpoint_write", ignore_result=True)
def checkpoint_write() -> None:
    services.checkpoint_write()
