from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

# The expression must match what SearchVector("text", config="simple") compiles to,
# or PostgreSQL will not use the index.
FTS_INDEX = (
    "CREATE INDEX IF NOT EXISTS message_text_fts_idx ON inbox_message "
    "USING gin (to_tsvector('simple'::regconfig, COALESCE(text, '')))"
)

ROLE_PERMISSIONS = {
    "Billing agent": ["view_invoice", "view_contact"],
    "Supervisor": [
        f"{verb}_{model}"
        for model in (
            "inbox",
            "team",
            "conversation",
            "label",
            "cannedresponse",
            "contact",
            "contactidentity",
            "inboxuserobjectpermission",
            "inboxgroupobjectpermission",
            "conversationuserobjectpermission",
            "conversationgroupobjectpermission",
        )
        for verb in ("view", "add", "change", "delete")
    ],
}


def search_index(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FTS_INDEX)


def drop_search_index(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS message_text_fts_idx")


def grant_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLE_PERMISSIONS.items():
        group = Group.objects.get(name=role)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="inbox", codename__in=codenames))
    Group.objects.get(name="Administrator").permissions.add(
        *Permission.objects.filter(content_type__app_label__in=["inbox", "accounts", "audit", "channels_app"])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("inbox", "0001_initial"),
        ("accounts", "0004_apitoken_inboxes_apitoken_user"),
        ("audit", "0002_accessevent"),
    ]

    operations = [
        migrations.RunPython(search_index, drop_search_index),
        migrations.RunPython(grant_roles, migrations.RunPython.noop),
    ]
