from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

# Supervisors read the access log of the accounts they manage (the admin scopes it).
CODENAMES = ["view_accessevent"]


def access_log_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.filter(content_type__app_label="audit", codename__in=CODENAMES)
    for role in ("Supervisor", "Administrator"):
        Group.objects.get(name=role).permissions.add(*permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0008_tamper_evidence"),
        ("accounts", "0002_roles"),
    ]

    operations = [migrations.RunPython(access_log_roles, migrations.RunPython.noop)]
