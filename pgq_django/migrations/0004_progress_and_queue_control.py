# ruff: noqa: RUF012  (Django reads these class attributes as they are)
"""Job progress and queue settings (pause, limits) of
migrations/0003_progress_and_queue_control.sql."""

from __future__ import annotations

from django.db import migrations, models

from pgq_django.sql_migrations import ApplySqlMigration


class Migration(migrations.Migration):
    dependencies = [("pgq_django", "0003_schedules_and_retention")]

    operations = [
        ApplySqlMigration("0003_progress_and_queue_control"),
        migrations.AddField(
            model_name="job",
            name="progress",
            field=models.JSONField(null=True, verbose_name="progress"),
        ),
    ]
