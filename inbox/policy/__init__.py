"""The policy decision point: the one place that decides who may do what to which object.

Views, API endpoints, socket consumers, Celery tasks and admin actions ask `can()` and
load protected objects only through the `access_*` loaders here. A decision is made in
this order, one file each:

- `context`: who asks, from where, with which signals (session, second factor, address);
- `grants`: what guardian's grant tables with their expiry allow (read here and nowhere
  else: guardian's own `has_perm` backend is deliberately not installed, as it knows
  nothing of expiry), as single objects and as list and live scopes;
- `rules`: the policy rules, data supervisors edit, which only narrow what grants allow,
  each off, in monitor mode or enforced;
- `decisions`: single-object decisions, recorded as access events, and the loaders;
- `supervision`: what a supervisor may manage.
"""

from inbox.policy.context import (
    BILLING_PERMISSION,
    CONVERSATION_CODENAMES,
    INBOX_CODENAMES,
    AccessContext,
    Action,
    Denied,
    StepUpRequired,
)
from inbox.policy.decisions import (
    access_attachment,
    access_contact,
    access_conversation,
    access_inbox,
    access_record,
    can,
    can_view_billing,
    pii_visible,
    record_listing,
    sees,
)
from inbox.policy.grants import (
    ConversationScope,
    LiveScope,
    conversation_filter,
    conversation_scope,
    live_scope,
    users_seeing,
    users_with_inbox_grant,
    visible_contacts,
    visible_conversations,
    visible_inboxes,
)
from inbox.policy.supervision import (
    MANAGE_TEAM_CODENAME,
    can_manage,
    groups_reaching_outside,
    is_administrator,
    managed_inboxes,
    managed_teams,
    managed_users,
    widens_own_access,
)

__all__ = [
    "BILLING_PERMISSION",
    "CONVERSATION_CODENAMES",
    "INBOX_CODENAMES",
    "MANAGE_TEAM_CODENAME",
    "AccessContext",
    "Action",
    "ConversationScope",
    "Denied",
    "LiveScope",
    "StepUpRequired",
    "access_attachment",
    "access_contact",
    "access_conversation",
    "access_inbox",
    "access_record",
    "can",
    "can_manage",
    "can_view_billing",
    "conversation_filter",
    "conversation_scope",
    "groups_reaching_outside",
    "is_administrator",
    "live_scope",
    "managed_inboxes",
    "managed_teams",
    "managed_users",
    "pii_visible",
    "record_listing",
    "sees",
    "users_seeing",
    "users_with_inbox_grant",
    "visible_contacts",
    "visible_conversations",
    "visible_inboxes",
    "widens_own_access",
]
