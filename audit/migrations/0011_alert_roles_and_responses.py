from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

# Supervisors work the alerts of the accounts they manage (the admin scopes them) and read
# the response policies; administrators, who hold every permission, also edit those.
SUPERVISOR_CODENAMES = ["view_alert", "change_alert", "view_alertresponse", "view_responsepolicy"]

# Where a deployment starts: telling supervisors and asking for a fresh second factor cost
# an agent little, so they are enforced; what stops work (ending sessions, freezing exports,
# locking, blocking an address) starts in monitor mode, to be enforced once its record
# shows it is right.
DEFAULT_RESPONSES = [
    (kind, "notify", 2, "enforce")
    for kind in ("bulk_reads", "denied_burst", "unusual_sign_in_hour", "otp_guessing", "password_spraying")
] + [
    ("unusual_sign_in_hour", "step_up", 2, "enforce"),
    ("network_change", "step_up", 1, "monitor"),
    ("new_device", "notify", 1, "enforce"),
    ("token_read_volume", "notify", 3, "enforce"),
    ("token_read_volume", "lock_account", 3, "monitor"),
    ("denied_burst", "step_up", 3, "enforce"),
    ("bulk_reads", "end_sessions", 3, "monitor"),
    ("bulk_reads", "freeze_exports", 2, "monitor"),
    ("otp_guessing", "lock_account", 3, "monitor"),
    ("password_spraying", "block_address", 3, "monitor"),
]


def alert_roles_and_responses(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    supervisor = Permission.objects.filter(content_type__app_label="audit", codename__in=SUPERVISOR_CODENAMES)
    Group.objects.get(name="Supervisor").permissions.add(*supervisor)
    every = Permission.objects.filter(
        content_type__app_label="audit",
        content_type__model__in=["alert", "alertresponse", "responsepolicy", "alertsuppression", "blockedaddress"],
    )
    Group.objects.get(name="Administrator").permissions.add(*every)
    ResponsePolicy = apps.get_model("audit", "ResponsePolicy")
    for kind, response, min_severity, mode in DEFAULT_RESPONSES:
        ResponsePolicy.objects.get_or_create(
            kind=kind, response=response, defaults={"min_severity": min_severity, "mode": mode}
        )


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0010_alerts_and_responses"),
        ("accounts", "0002_roles"),
    ]

    operations = [migrations.RunPython(alert_roles_and_responses, migrations.RunPython.noop)]
