"""Webhooks and export jobs now belong to the webhooks and reports apps; their tables stay."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('projects', '0005_commit_short_references_opt_in'),
    ]

    operations = [
        # The table stays where it is (db_table); only Django's idea of which app owns the model moves.
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.RemoveField(
                model_name='webhookdelivery',
                name='subscription',
            ),
            migrations.RemoveField(
                model_name='webhooksubscription',
                name='created_by',
            ),
            migrations.RemoveField(
                model_name='webhooksubscription',
                name='project',
            ),
            migrations.DeleteModel(
                name='ExportJob',
            ),
            migrations.DeleteModel(
                name='WebhookDelivery',
            ),
            migrations.DeleteModel(
                name='WebhookSubscription',
            ),
            ],
        ),
    ]
