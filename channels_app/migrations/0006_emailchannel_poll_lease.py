from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("channels_app", "0005_social_roles")]

    operations = [
        migrations.AddField(
            model_name="emailchannel",
            name="poll_lease",
            field=models.CharField(blank=True, max_length=32),
        ),
        migrations.AddField(
            model_name="emailchannel",
            name="poll_lease_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
