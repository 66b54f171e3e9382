"""Export jobs, moved from the projects app: their table is not touched."""

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
                name='ExportJob',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('kind', models.CharField(choices=[('tasks_csv', 'Tasks (CSV)'), ('commits_csv', 'Commits (CSV)'), ('digest_md', 'Digest (Markdown)'), ('digest_html', 'Digest (HTML)')], max_length=20)),
                    ('filters', models.JSONField(blank=True, default=dict)),
                    ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed')], default='queued', max_length=20)),
                    ('file', models.FileField(blank=True, upload_to='exports/%Y/%m/')),
                    ('rows', models.PositiveIntegerField(default=0)),
                    ('error', models.TextField(blank=True)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('started_at', models.DateTimeField(blank=True, null=True)),
                    ('finished_at', models.DateTimeField(blank=True, null=True)),
                    ('project', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='exports', to='projects.project')),
                    ('requested_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'db_table': 'export_jobs',
                    'ordering': ['-created_at', '-id'],
                    'indexes': [models.Index(fields=['project', '-created_at'], name='idx_export_jobs_project_time')],
                },
            ),
            ],
        ),
        # Permissions, groups and admin history follow the models.
        content_types_move(models=("exportjob",), old_app="projects", new_app="reports"),
    ]
