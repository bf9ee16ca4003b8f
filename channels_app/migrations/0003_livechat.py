import django.db.models.deletion
from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

import channels_app.common.crypto
import channels_app.livechat.models

# Supervisors configure the widget (origins, identity verification, forms).
SUPERVISOR_CODENAMES = [
    "view_livechatchannel",
    "add_livechatchannel",
    "change_livechatchannel",
    "delete_livechatchannel",
]


def grant_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    # Permissions are normally created after all migrations ran; the roles need them now.
    app_config = apps.get_app_config("channels_app")
    app_config.models_module = True
    create_permissions(app_config, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.filter(
        content_type__app_label="channels_app", codename__in=SUPERVISOR_CODENAMES
    )
    Group.objects.get(name="Supervisor").permissions.add(*permissions)
    Group.objects.get(name="Administrator").permissions.add(*permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("channels_app", "0002_roles"),
        ("inbox", "0002_search_index_and_roles"),
    ]

    operations = [
        migrations.CreateModel(
            name="LiveChatChannel",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "key",
                    models.CharField(
                        default=channels_app.livechat.models.livechat_key_default, editable=False, max_length=40, unique=True
                    ),
                ),
                ("enabled", models.BooleanField(default=True)),
                (
                    "allowed_origins",
                    models.TextField(
                        help_text="One origin per line, exactly as the site is served: scheme, host and port, e.g. https://www.example.com. Pages anywhere else cannot open the chat."
                    ),
                ),
                (
                    "identity_secret",
                    channels_app.common.crypto.EncryptedTextField(
                        default=channels_app.livechat.models.livechat_secret_default, editable=False
                    ),
                ),
                (
                    "identity_required",
                    models.BooleanField(
                        default=False,
                        help_text="Only visitors the site has signed in (user id with a valid HMAC) may chat.",
                    ),
                ),
                (
                    "prechat_name",
                    models.CharField(
                        choices=[("off", "Not asked"), ("optional", "Optional"), ("required", "Required")],
                        default="optional",
                        max_length=8,
                        verbose_name="ask for the name",
                    ),
                ),
                (
                    "prechat_email",
                    models.CharField(
                        choices=[("off", "Not asked"), ("optional", "Optional"), ("required", "Required")],
                        default="off",
                        max_length=8,
                        verbose_name="ask for the email address",
                    ),
                ),
                ("welcome_text", models.CharField(default="Hi! How can we help you today?", max_length=300)),
                (
                    "offline_form",
                    models.BooleanField(
                        default=True, help_text="When no agent is online, collect an email address and a message."
                    ),
                ),
                (
                    "offline_text",
                    models.CharField(
                        default="We are offline right now. Leave your email and a message; we will write back.",
                        max_length=300,
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "inbox",
                    models.OneToOneField(
                        limit_choices_to={"channel_kind": "livechat"},
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="livechat_channel",
                        to="inbox.inbox",
                    ),
                ),
            ],
            options={
                "verbose_name": "live chat channel",
                "ordering": ["inbox__name"],
            },
        ),
        migrations.RunPython(grant_roles, migrations.RunPython.noop),
    ]
