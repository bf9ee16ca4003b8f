"""The built-in roles (Django groups) and the model permissions each carries.

Access to inboxes and conversations is not here: it is granted per object (guardian)
and decided by the policy module. These are the admin-level capabilities.
"""

AGENT = "Agent"
SUPERVISOR = "Supervisor"
BILLING_AGENT = "Billing agent"
ADMINISTRATOR = "Administrator"

ROLE_PERMISSIONS: dict[str, list[str]] = {
    AGENT: [],
    BILLING_AGENT: [],
    SUPERVISOR: [
        "accounts.view_user",
        "accounts.add_user",
        "accounts.change_user",
        "accounts.view_usersession",
        "accounts.change_usersession",
        "auth.view_group",
        "otp_totp.view_totpdevice",
        "otp_static.view_staticdevice",
        "audit.view_securityevent",
        "auditlog.view_logentry",
        # Change requests and team grants are added by inbox migration 0004, once their
        # tables exist (this list is read by the first roles migration).
    ],
    # Administrators hold every permission; see the roles migration.
    ADMINISTRATOR: [],
}
