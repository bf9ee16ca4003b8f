from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def inbox_view(request: HttpRequest) -> HttpResponse:
    return render(request, "inbox/list.html", {"conversations": []})
