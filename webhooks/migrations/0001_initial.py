"""Webhook subscriptions and deliveries, moved from the projects app: their tables are not touched."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from apm.db import content_types_move


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('projects', '0006_webhooks_and_exports_moved_out'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The table stays where it is (db_table); only Django's idea of which app owns the model moves.
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='WebhookSubscription',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('updated_at', models.DateTimeField(auto_now=True)),
                    ('url', models.URLField(max_length=2000)),
                    ('events', models.JSONField(default=list, help_text='Event names this URL receives, e.g. ["task.created"].')),
                    ('secret', models.CharField(editable=False, max_length=64)),
                    ('is_active', models.BooleanField(default=True)),
                    ('description', models.CharField(blank=True, max_length=200)),
                    ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('project', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='webhooks', to='projects.project')),
                ],
                options={
                    'db_table': 'webhook_subscriptions',
                    'ordering': ['project_id', 'id'],
                },
            ),
            migrations.CreateModel(
                name='WebhookDelivery',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('event', models.CharField(max_length=40)),
                    ('delivery_id', models.UUIDField(editable=False, unique=True)),
                    ('payload', models.JSONField()),
                    ('status', models.CharField(choices=[('pending', 'Pending'), ('succeeded', 'Succeeded'), ('failed', 'Failed')], default='pending', max_length=20)),
                    ('attempts', models.PositiveSmallIntegerField(default=0)),
                    ('last_status_code', models.PositiveSmallIntegerField(blank=True, null=True)),
                    ('last_error', models.CharField(blank=True, max_length=500)),
                    ('response_excerpt', models.TextField(blank=True, help_text='The start of the last response body.')),
                    ('duration_ms', models.PositiveIntegerField(blank=True, null=True)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('next_attempt_at', models.DateTimeField(blank=True, null=True)),
                    ('delivered_at', models.DateTimeField(blank=True, null=True)),
                    ('subscription', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='webhooks.webhooksubscription')),
                ],
                options={
                    'verbose_name_plural': 'webhook deliveries',
                    'db_table': 'webhook_deliveries',
                    'ordering': ['-created_at', '-id'],
                },
            ),
            migrations.AddIndex(
                model_name='webhooksubscription',
                index=models.Index(fields=['project', 'is_active'], name='idx_webhook_subs_project'),
            ),
            migrations.AddIndex(
                model_name='webhookdelivery',
                index=models.Index(fields=['subscription', '-created_at', '-id'], name='idx_webhook_deliv_sub_time'),
            ),
            migrations.AddIndex(
                model_name='webhookdelivery',
                index=models.Index(fields=['-created_at', '-id'], name='idx_webhook_deliv_time'),
            ),
            migrations.AddIndex(
                model_name='webhookdelivery',
                index=models.Index(fields=['status', '-created_at'], name='idx_webhook_deliv_status'),
            ),
            ],
        ),
        # Permissions, groups and admin history follow the models.
        content_types_move(models=("webhooksubscription", "webhookdelivery"), old_app="projects", new_app="webhooks"),
    ]
