from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

# Supervisors configure API channels as they do the other webhook channels.
SUPERVISOR_CODENAMES = [f"{action}_apichannel" for action in ("view", "add", "change", "delete")]


def grant_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    # Permissions are normally created after all migrations ran; the roles need them now.
    app_config = apps.get_app_config("channels_app")
    app_config.models_module = True
    create_permissions(app_config, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    api_permissions = Permission.objects.filter(
        content_type__app_label="channels_app", codename__in=SUPERVISOR_CODENAMES
    )
    Group.objects.get(name="Supervisor").permissions.add(*api_permissions)
    Group.objects.get(name="Administrator").permissions.add(*api_permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("channels_app", "0008_api_channel"),
        ("accounts", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant_roles, migrations.RunPython.noop)]
