from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

# Supervisors ask for and decide change requests, and edit who supervises a team. They no
# longer delete second-factor devices: that is a reset, and a reset is a change request.
SUPERVISOR_ADD = {
    "accounts": ["view_changerequest", "add_changerequest", "change_changerequest"],
    "inbox": [
        f"{verb}_{model}"
        for model in ("teamuserobjectpermission", "teamgroupobjectpermission")
        for verb in ("view", "add", "change", "delete")
    ],
}
SUPERVISOR_REMOVE = {"otp_totp": ["delete_totpdevice"], "otp_static": ["delete_staticdevice"]}
KINDS = [
    "create_account",
    "add_to_group",
    "grant",
    "reset_password",
    "reset_factor",
    "change_supervisor",
    "reactivate",
]


def _permissions(Permission, spec):  # type: ignore[no-untyped-def]
    for app_label, codenames in spec.items():
        yield from Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)


def supervision_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    supervisor = Group.objects.get(name="Supervisor")
    supervisor.permissions.add(*_permissions(Permission, SUPERVISOR_ADD))
    supervisor.permissions.remove(*_permissions(Permission, SUPERVISOR_REMOVE))
    Group.objects.get(name="Administrator").permissions.add(
        *Permission.objects.filter(content_type__app_label__in=["inbox", "accounts"])
    )
    ApprovalRule = apps.get_model("accounts", "ApprovalRule")
    for kind in KINDS:
        ApprovalRule.objects.get_or_create(kind=kind, defaults={"requires_second_approval": True})


class Migration(migrations.Migration):
    dependencies = [
        ("inbox", "0003_team_grants"),
        ("accounts", "0005_change_requests"),
    ]

    operations = [migrations.RunPython(supervision_roles, migrations.RunPython.noop)]
