"""Short references ('#12' read as task 12) become opt-in.

They were on by default, and on a GitHub-hosted history '#12' is a pull request: "Merge pull request
#5962" linked task 5962 of the project. Nobody chose that default, so projects that still have it are
turned off, except those whose admin history shows someone changed the setting (turned it off and on
again): that is a choice, and it is kept. docs/automation.md says so.
"""

from django.db import migrations, models


def short_references_off_unless_chosen(apps, schema_editor):
    Project = apps.get_model("projects", "Project")
    LogEntry = apps.get_model("admin", "LogEntry")
    # The admin records the labels of the fields an operator changed ("Commit short references"); the
    # API keeps no such trace, so a project switched on through it cannot be told from the default.
    chosen = {
        int(object_id)
        for object_id in LogEntry.objects.filter(
            content_type__app_label="projects",
            content_type__model="project",
            change_message__icontains="short references",
        ).values_list("object_id", flat=True)
        if object_id.isdigit()
    }
    Project.objects.filter(commit_short_references=True).exclude(pk__in=chosen).update(
        commit_short_references=False
    )


class Migration(migrations.Migration):

    dependencies = [
        ('projects', '0004_webhooks'),
        ('admin', '0003_logentry_add_action_flag_choices'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.AlterField(
            model_name='project',
            name='commit_short_references',
            field=models.BooleanField(default=False, help_text="Read '#12' in this project's repositories as this project's task 12. Leave off when the repositories' '#12' are pull requests or issues of their host (GitHub, GitLab, Gitea)."),
        ),
        # Reversing leaves the projects as they are: which ones had the old default is not recorded.
        migrations.RunPython(short_references_off_unless_chosen, migrations.RunPython.noop),
    ]
