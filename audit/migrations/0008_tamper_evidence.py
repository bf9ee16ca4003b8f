"""The hash chain's table, and PostgreSQL triggers that make the audit tables append-only.

The triggers refuse UPDATE and DELETE of every row for every role, the table owner
included; only someone who may ALTER TABLE … DISABLE TRIGGER gets past them, and what such
a person changes is what `verify_audit` finds. TRUNCATE is left alone (row triggers do
not see it): the test runner flushes tables with it, and production revokes it from the
application's role. SQLite (`make run` without DATABASE_URL) has no triggers here.
"""

from django.db import migrations, models

APPEND_ONLY_TABLES = (
    "audit_securityevent",
    "audit_accessevent",
    "audit_ruledecision",
    "auditlog_logentry",
    "audit_chainlink",
)

CREATE_FUNCTION = """
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
"""


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # No params: the body's % are RAISE placeholders, not the driver's.
    schema_editor.execute(CREATE_FUNCTION, params=None)
    for table in APPEND_ONLY_TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()"
        )


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in APPEND_ONLY_TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS audit_append_only ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS audit_refuse_change()")


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0007_rule_decisions"),
        ("auditlog", "0017_add_actor_email"),
    ]

    operations = [
        migrations.CreateModel(
            name="ChainLink",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("source", models.CharField(max_length=40)),
                ("seq", models.BigIntegerField()),
                ("row_id", models.BigIntegerField()),
                ("chain_hash", models.BinaryField(max_length=32)),
                ("sealed_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("source", "seq"), name="chainlink_source_seq_uniq")
                ],
            },
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
