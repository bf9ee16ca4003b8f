from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

# Supervisors write rules for the inboxes they manage (the admin keeps them inside their
# delegation) and read what the rules decided.
SUPERVISOR = {
    "inbox": [f"{verb}_policyrule" for verb in ("view", "add", "change", "delete")],
    "audit": ["view_ruledecision"],
}


def policy_rule_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role in ("Supervisor", "Administrator"):
        group = Group.objects.get(name=role)
        for app_label, codenames in SUPERVISOR.items():
            group.permissions.add(
                *Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
            )


class Migration(migrations.Migration):
    dependencies = [
        ("inbox", "0005_policy_rules"),
        ("audit", "0007_rule_decisions"),
    ]

    operations = [migrations.RunPython(policy_rule_roles, migrations.RunPython.noop)]
