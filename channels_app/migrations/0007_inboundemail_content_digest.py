import hashlib

from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

BATCH = 500


def key_by_digest(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Stored mail was known by its Message-ID ("mid:..."); it is known by its bytes now,
    so a resync finds it again. Rows with the same bytes had the same Message-ID, so the
    new keys cannot collide."""
    InboundEmail = apps.get_model("channels_app", "InboundEmail")
    rows = InboundEmail.objects.filter(dedup_key__startswith="mid:").only("pk", "raw")
    batch = []
    for row in rows.iterator(chunk_size=BATCH):
        row.dedup_key = "sha256:" + hashlib.sha256(bytes(row.raw)).hexdigest()
        batch.append(row)
        if len(batch) >= BATCH:
            InboundEmail.objects.bulk_update(batch, ["dedup_key"])
            batch = []
    InboundEmail.objects.bulk_update(batch, ["dedup_key"])


class Migration(migrations.Migration):
    dependencies = [("channels_app", "0006_emailchannel_poll_lease")]

    operations = [
        migrations.RunPython(key_by_digest, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="inboundemail",
            index=models.Index(fields=["channel", "uidvalidity", "uid"], name="inboundemail_uid_idx"),
        ),
    ]
