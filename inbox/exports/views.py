"""The exports page, its progress endpoint and the one-time download. Thin: one call into
a service or selector each; the services ask the policy."""

from __future__ import annotations

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from inbox import policy
from inbox.exports import selectors, services
from inbox.exports.forms import ExportForm
from inbox.exports.models import ExportJob
from inbox.policy import AccessContext
from inbox.services import InvalidRequest


def _progress(job: ExportJob) -> dict[str, object]:
    now = timezone.now()
    downloadable = (
        job.status == ExportJob.Status.DONE
        and job.downloaded_at is None
        and job.link_expires_at is not None
        and job.link_expires_at > now
    )
    percent = (
        100
        if job.status == ExportJob.Status.DONE
        else (min(99, job.rows_written * 100 // job.rows_total) if job.rows_total else 0)
    )
    return {
        "id": job.pk,
        "status": job.status,
        "status_label": job.get_status_display(),
        "rows_written": job.rows_written,
        "rows_total": job.rows_total,
        "percent": percent,
        "error": job.error,
        "download_url": services.download_url(job) if downloadable else None,
        "file_name": job.file_name if downloadable else "",
        "downloaded": job.downloaded_at is not None,
    }


def _page(
    request: HttpRequest, ctx: AccessContext, form: ExportForm, *, error: str = "", status: int = 200
) -> HttpResponse:
    jobs = [(job, _progress(job)) for job in selectors.exports_of(ctx.user)]
    return render(request, "exports/list.html", {"form": form, "jobs": jobs, "error": error}, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def exports_view(request: HttpRequest) -> HttpResponse:
    ctx = AccessContext.from_request(request)
    if request.method == "GET":
        return _page(request, ctx, ExportForm(ctx=ctx))
    form = ExportForm(request.POST, ctx=ctx)
    if not form.is_valid():
        return _page(request, ctx, form, status=400)
    try:
        services.export_request(
            ctx=ctx,
            inbox=form.cleaned_data["inbox"],
            kind=form.cleaned_data["kind"],
            format=form.cleaned_data["format"],
        )
    except services.ExportRefused as refused:
        return _page(request, ctx, form, error=str(refused), status=refused.status)
    except policy.StepUpRequired:
        raise  # the step-up gate asks for the code, then posts this very form again
    except (policy.Denied, InvalidRequest) as error:
        return _page(
            request, ctx, form, error=str(error), status=403 if isinstance(error, policy.Denied) else 400
        )
    return redirect("exports:list")


@never_cache
@require_GET
def export_progress_view(request: HttpRequest, export_id: int) -> JsonResponse:
    job = selectors.export_of(AccessContext.from_request(request).user, export_id)
    return JsonResponse(_progress(job))


@never_cache
@require_GET
def export_download_view(request: HttpRequest, export_id: int) -> HttpResponseBase:
    ctx = AccessContext.from_request(request)
    try:
        file = services.export_download_open(ctx=ctx, export_id=export_id, token=request.GET.get("t", ""))
    except services.ExportRefused as refused:
        return render(request, "exports/refused.html", {"message": str(refused)}, status=refused.status)
    response = FileResponse(
        file.handle, as_attachment=True, filename=file.name, content_type=file.content_type
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response
