"""Messages' text and HTML compressed with lz4 where the server has it (PostgreSQL 14+ built
with lz4). PostgreSQL's default, pglz, took about five times as long over a mail's ~25 KB
of text and HTML: ~0.4 ms of the database's ~3 ms per stored email (docs/capacity.md).
Every channel stores messages here, so the column says it, not one ingest path. Values
already stored keep their compression; readers decompress either alike."""

from collections.abc import Callable

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

LZ4_AVAILABLE = "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"


def compression_set(method: str) -> Callable[[StateApps, BaseDatabaseSchemaEditor], None]:
    def apply(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        connection = schema_editor.connection
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            cursor.execute(LZ4_AVAILABLE)
            if cursor.fetchone() is None:
                return
            cursor.execute(
                f"ALTER TABLE inbox_message ALTER COLUMN text SET COMPRESSION {method},"
                f" ALTER COLUMN html SET COMPRESSION {method}"
            )

    return apply


class Migration(migrations.Migration):
    dependencies = [
        ("inbox", "0014_grant_names"),
    ]

    operations = [
        migrations.RunPython(compression_set("lz4"), compression_set("default")),
    ]
