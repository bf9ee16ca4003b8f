import django.db.models.deletion
from django.apps.registry import Apps
from django.conf import settings
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

# Impossible travel starts as telling supervisors (enforced) and asking for a fresh second
# factor in monitor mode, as a network change does.
TRAVEL_RESPONSES = [("notify", 2, "enforce"), ("step_up", 2, "monitor")]


def blocks_as_records(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    BlockedAddress = apps.get_model("audit", "BlockedAddress")
    for block in BlockedAddress.objects.select_related("response__alert"):
        alert = block.response.alert
        block.alert_id = alert.pk
        block.network = f"{block.ip_address}/{128 if ':' in block.ip_address else 32}"
        block.reason = f"Alert #{alert.pk}: {alert.kind}"
        block.save(update_fields=["alert", "network", "reason"])
    ResponsePolicy = apps.get_model("audit", "ResponsePolicy")
    for response, min_severity, mode in TRAVEL_RESPONSES:
        ResponsePolicy.objects.get_or_create(
            kind="impossible_travel",
            response=response,
            defaults={"min_severity": min_severity, "mode": mode},
        )


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0012_search_export_socket_detectors"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="blockedaddress",
            name="network",
            field=models.CharField(
                default="",
                help_text="What is refused: the address as /32 or /128, or a network.",
                max_length=49,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="blockedaddress",
            name="reason",
            field=models.CharField(default="", max_length=300),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="blockedaddress",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="blockedaddress",
            name="lifted_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="blockedaddress",
            name="alert",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="blocks",
                to="audit.alert",
            ),
        ),
        migrations.RunPython(blocks_as_records, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="blockedaddress",
            name="alert",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="blocks", to="audit.alert"
            ),
        ),
        migrations.AlterField(
            model_name="blockedaddress",
            name="ip_address",
            field=models.GenericIPAddressField(help_text="The address the alert was about."),
        ),
        migrations.AlterField(
            model_name="blockedaddress",
            name="until",
            field=models.DateTimeField(db_index=True),
        ),
        migrations.AlterModelOptions(
            name="blockedaddress",
            options={"ordering": ["-created_at"], "verbose_name_plural": "blocked addresses"},
        ),
        migrations.AlterField(
            model_name="alert",
            name="kind",
            field=models.CharField(
                choices=[
                    ("bulk_reads", "Bulk reads"),
                    ("denied_burst", "Burst of refused accesses (probing)"),
                    ("token_read_volume", "API token read volume"),
                    ("unusual_sign_in_hour", "Sign-in at an unusual hour"),
                    ("network_change", "Sign-in from a new network"),
                    ("impossible_travel", "Impossible travel between sign-ins"),
                    ("new_device", "New device"),
                    ("otp_guessing", "Second-factor guessing"),
                    ("password_spraying", "Password spraying from one address"),
                    ("search_burst", "Burst of searches"),
                    ("export_volume", "Export volume"),
                    ("socket_new_inboxes", "Socket subscribed beyond its usual inboxes"),
                ],
                max_length=32,
            ),
        ),
        migrations.AlterField(
            model_name="alertsuppression",
            name="kind",
            field=models.CharField(
                choices=[
                    ("bulk_reads", "Bulk reads"),
                    ("denied_burst", "Burst of refused accesses (probing)"),
                    ("token_read_volume", "API token read volume"),
                    ("unusual_sign_in_hour", "Sign-in at an unusual hour"),
                    ("network_change", "Sign-in from a new network"),
                    ("impossible_travel", "Impossible travel between sign-ins"),
                    ("new_device", "New device"),
                    ("otp_guessing", "Second-factor guessing"),
                    ("password_spraying", "Password spraying from one address"),
                    ("search_burst", "Burst of searches"),
                    ("export_volume", "Export volume"),
                    ("socket_new_inboxes", "Socket subscribed beyond its usual inboxes"),
                ],
                max_length=32,
            ),
        ),
        migrations.AlterField(
            model_name="responsepolicy",
            name="kind",
            field=models.CharField(
                choices=[
                    ("bulk_reads", "Bulk reads"),
                    ("denied_burst", "Burst of refused accesses (probing)"),
                    ("token_read_volume", "API token read volume"),
                    ("unusual_sign_in_hour", "Sign-in at an unusual hour"),
                    ("network_change", "Sign-in from a new network"),
                    ("impossible_travel", "Impossible travel between sign-ins"),
                    ("new_device", "New device"),
                    ("otp_guessing", "Second-factor guessing"),
                    ("password_spraying", "Password spraying from one address"),
                    ("search_burst", "Burst of searches"),
                    ("export_volume", "Export volume"),
                    ("socket_new_inboxes", "Socket subscribed beyond its usual inboxes"),
                ],
                max_length=32,
            ),
        ),
    ]
