"""Writes: requesting an export, running it, handing the file over once, and freezing a
user's exports. Every step asks the policy again and is recorded as an access event."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import User
from inbox import policy
from inbox.exports import selectors
from inbox.exports.formats import WRITERS, Watermark
from inbox.exports.models import ExportFreeze, ExportJob
from inbox.exports.sources import SOURCES
from inbox.models import Inbox
from inbox.policy import AccessContext, Action
from inbox.policy.decisions import STEP_UP_MESSAGE
from inbox.services import InvalidRequest

logger = logging.getLogger(__name__)

OBJECT_TYPE = "inbox.exportjob"
LINK_SALT = "inbox.exports.download"
Status = ExportJob.Status


class ExportRefused(InvalidRequest):
    """An export step refused, with the HTTP status that says why: 403 (not allowed now),
    410 (a link used or expired), 429 (over the quota)."""

    def __init__(self, message: str, *, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


class _Stopped(Exception):
    """A running export stopped on purpose (a freeze, a quota); the reason is shown."""


def _record(ctx: AccessContext, job_id: int | None, action: str, allowed: bool) -> None:
    policy.access_record(ctx, OBJECT_TYPE, job_id, action, allowed)


def _frozen_message(freeze: ExportFreeze) -> str:
    return f"Your exports are frozen until {freeze.until:%Y-%m-%d %H:%M} UTC: {freeze.reason}"


def _quota_refusal(user: User, rows: int, *, excluding: int | None = None) -> str | None:
    used = selectors.quota_used(user)
    files, rows_used = used.files, used.rows
    if excluding is not None:
        # At the run the job itself is already counted; it is charged what it holds now.
        charged = ExportJob.objects.filter(pk=excluding).values_list("rows_total", flat=True).first() or 0
        files, rows_used = files - 1, rows_used - charged
    if files + 1 > settings.EXPORT_DAILY_MAX_FILES:
        return f"You have used today's {settings.EXPORT_DAILY_MAX_FILES} exports. Ask again tomorrow."
    left = max(0, settings.EXPORT_DAILY_MAX_ROWS - rows_used)
    if rows > left:
        return f"This export holds {rows} rows; you may export {left} more today."
    return None


def export_request(*, ctx: AccessContext, inbox: Inbox, kind: str, format: str) -> ExportJob:
    """Check, charge the quota and queue an export. Needs the inbox's export grant and a
    fresh second factor; raises ExportRefused (frozen, over quota), Denied or
    StepUpRequired."""
    if kind not in SOURCES or format not in WRITERS:
        raise InvalidRequest("Unknown kind or format of export.")
    if (freeze := selectors.freeze_of(ctx.user)) is not None:
        _record(ctx, None, "export:request", False)
        raise ExportRefused(_frozen_message(freeze))
    if not policy.can(ctx, Action.EXPORT, inbox):
        raise policy.Denied("You may not export from this inbox.")
    # Friction where the risk is: every export asks for a fresh second factor.
    if not ctx.step_up_fresh:
        raise policy.StepUpRequired(STEP_UP_MESSAGE)
    rows = SOURCES[kind].selection(ctx, inbox).count()
    with transaction.atomic():
        # Two requests at once must not both fit into what is left of the quota.
        User.objects.select_for_update().filter(pk=ctx.user.pk).first()
        if (refusal := _quota_refusal(ctx.user, rows)) is not None:
            _record(ctx, None, "export:request", False)
            raise ExportRefused(refusal, status=429)
        job = ExportJob.objects.create(
            user=ctx.user,
            inbox=inbox,
            kind=kind,
            format=format,
            rows_total=rows,
            session_id=ctx.session_id,
            ip_address=ctx.ip_address,
        )
        _record(ctx, job.pk, "export:request", True)
        transaction.on_commit(lambda: _enqueue(job.pk))
    logger.info(
        "export requested",
        extra={"export_id": job.pk, "user_id": ctx.user.pk, "inbox_id": inbox.pk, "kind": kind, "rows": rows},
    )
    return job


def _enqueue(export_id: int) -> None:
    from inbox.exports import tasks

    tasks.export_run.delay(export_id)


def export_path(job: ExportJob) -> Path:
    """Where a job's file lives: named by the id only, never by anything a user typed."""
    return Path(settings.EXPORTS_ROOT) / f"{job.pk}.{WRITERS[job.format].extension}"


def _fail(job: ExportJob, reason: str) -> None:
    ExportJob.objects.filter(pk=job.pk).update(
        status=Status.FAILED, error=reason[:300], finished_at=timezone.now()
    )


def _refusal_at_run(ctx: AccessContext, job: ExportJob) -> str | None:
    """The task re-checks what it acts on: the grant, a freeze, the quota, all as of now."""
    if (freeze := selectors.freeze_of(job.user)) is not None:
        return _frozen_message(freeze)
    try:
        allowed = policy.can(ctx, Action.EXPORT, job.inbox)
    except policy.Denied:
        allowed = False
    if not allowed:
        return "You may no longer export from this inbox."
    return None


def export_run(export_id: int) -> None:
    """Write a queued export to its file, watermarked, reporting progress per chunk."""
    with transaction.atomic():
        job = (
            ExportJob.objects.select_for_update(of=("self",))
            .select_related("user", "inbox")
            .filter(pk=export_id, status=Status.QUEUED)
            .first()
        )
        if job is None:
            return  # run already (the task is acknowledged late and may come twice)
        ExportJob.objects.filter(pk=job.pk).update(status=Status.RUNNING)
    ctx = AccessContext.for_task(job.user)
    if (refusal := _refusal_at_run(ctx, job)) is not None:
        _record(ctx, job.pk, "export:run", False)
        _fail(job, refusal)
        return
    source = SOURCES[job.kind]
    rows = source.selection(ctx, job.inbox).count()
    if (refusal := _quota_refusal(job.user, rows, excluding=job.pk)) is not None:
        _fail(job, refusal)
        return
    ExportJob.objects.filter(pk=job.pk).update(rows_total=rows)
    writer = WRITERS[job.format]
    started = timezone.now()
    watermark = Watermark(job.pk, job.user.get_username(), job.user.pk, job.inbox.name, job.kind, started)
    file_name = (
        f"portcullis-export-{job.pk}-{job.kind}-{slugify(job.user.get_username())}-{watermark.stamp}"
        f".{writer.extension}"
    )
    path = export_path(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    written = 0

    def progress(count: int) -> None:
        nonlocal written
        written += count
        if (freeze := selectors.freeze_of(job.user)) is not None:
            raise _Stopped(_frozen_message(freeze))
        ExportJob.objects.filter(pk=job.pk).update(rows_written=written)

    try:
        with partial.open("w", encoding="utf-8", newline="") as out:
            writer.write(out, watermark, source.columns, source.chunks(ctx, job.inbox), progress)
        os.replace(partial, path)
    except _Stopped as stopped:
        partial.unlink(missing_ok=True)
        _fail(job, str(stopped))
        return
    except Exception:
        partial.unlink(missing_ok=True)
        logger.exception("export failed", extra={"export_id": job.pk})
        _fail(job, "The export failed. Ask for it again.")
        raise
    finished = timezone.now()
    ExportJob.objects.filter(pk=job.pk).update(
        status=Status.DONE,
        rows_written=written,
        file_name=file_name,
        file_bytes=path.stat().st_size,
        sha256=_sha256(path),
        finished_at=finished,
        link_expires_at=finished + settings.EXPORT_LINK_TTL,
    )
    _record(ctx, job.pk, "export:written", True)
    logger.info("export written", extra={"export_id": job.pk, "rows": written})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def download_url(job: ExportJob) -> str:
    """The job owner's link: signed for this job and this user, good once, until it expires."""
    token = signing.dumps({"export": job.pk, "user": job.user_id}, salt=LINK_SALT)
    return reverse("exports:download", kwargs={"export_id": job.pk}) + f"?t={token}"


@dataclass(frozen=True)
class ExportFile:
    name: str
    content_type: str
    handle: BinaryIO


def export_download_open(*, ctx: AccessContext, export_id: int, token: str) -> ExportFile:
    """Hand the file over once, to its owner, while the link lives and the owner may still
    export from the inbox. The file is deleted as it is handed over: no copy stays behind."""
    job = selectors.export_of(ctx.user, export_id)

    def refuse(message: str, status: int) -> ExportRefused:
        _record(ctx, job.pk, "export:download", False)
        return ExportRefused(message, status=status)

    try:
        signed = signing.loads(token, salt=LINK_SALT)
    except signing.BadSignature:
        signed = None
    if signed != {"export": job.pk, "user": ctx.user.pk}:
        raise refuse("This download link is not valid.", 403)
    if (freeze := selectors.freeze_of(ctx.user)) is not None:
        raise refuse(_frozen_message(freeze), 403)
    if job.status != Status.DONE:
        raise refuse("This export has no file to download.", 410)
    now = timezone.now()
    if job.downloaded_at is not None:
        raise refuse("This export was downloaded already: its link works once.", 410)
    if job.link_expires_at is None or job.link_expires_at <= now:
        raise refuse("This download link has expired. Ask for the export again.", 410)
    if not policy.can(ctx, Action.EXPORT, job.inbox):
        raise refuse("You may no longer export from this inbox.", 403)
    with transaction.atomic():
        claimed = ExportJob.objects.filter(
            pk=job.pk, downloaded_at__isnull=True, link_expires_at__gt=now
        ).update(downloaded_at=now)
        if not claimed:
            raise refuse("This export was downloaded already: its link works once.", 410)
        path = export_path(job)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise refuse("This export's file is gone. Ask for the export again.", 410) from None
        # Open handles keep the bytes readable for this response; nothing else can reach them.
        path.unlink()
        _record(ctx, job.pk, "export:download", True)
    logger.info("export downloaded", extra={"export_id": job.pk, "user_id": ctx.user.pk})
    return ExportFile(job.file_name, WRITERS[job.format].content_type, handle)


def exports_purge(*, now: datetime | None = None) -> int:
    """Delete the files of exports whose link expired unread; returns how many."""
    now = now or timezone.now()
    purged = 0
    for job in ExportJob.objects.filter(
        status=Status.DONE, downloaded_at__isnull=True, link_expires_at__lte=now
    ).only("pk", "format"):
        path = export_path(job)
        if path.exists():
            path.unlink(missing_ok=True)
            purged += 1
    return purged


def exports_freeze(user: User, *, reason: str, until: datetime) -> ExportFreeze:
    """Stop the user's exports until `until`: no request, no run (a running one stops at its
    next chunk), no download. Monitoring calls this on an export-volume anomaly."""
    freeze = ExportFreeze.objects.create(user=user, reason=reason[:300], until=until)
    logger.warning("exports frozen", extra={"user_id": user.pk, "until": until.isoformat()})
    return freeze


def exports_unfreeze(user: User, *, by: User | None = None) -> int:
    """Lift every active freeze on the user's exports; returns how many were lifted."""
    lifted = ExportFreeze.objects.filter(user=user, lifted_at__isnull=True, until__gt=timezone.now()).update(
        lifted_at=timezone.now(), lifted_by=by
    )
    logger.warning("exports unfrozen", extra={"user_id": user.pk, "by": by.pk if by else None})
    return lifted
