"""Reads for the API channel: the channel a push names, if the caller may write to it."""

from __future__ import annotations

from django.http import Http404

from channels_app.api.models import ApiChannel
from channels_app.webhooks import selectors
from inbox import policy


def api_channel_for_push(ctx: policy.AccessContext, channel_id: int) -> ApiChannel:
    """The enabled channel, once the policy lets the caller write to its inbox: 404 when the
    channel or its inbox is out of the caller's reach (no existence leak), Denied (403) when
    it may only read."""
    channel = selectors.channel_enabled(ApiChannel, channel_id)
    if channel is None:
        raise Http404
    policy.access_inbox(ctx, channel.inbox_id, policy.Action.REPLY)
    return channel
