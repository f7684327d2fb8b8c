# ruff: noqa: RUF012  (Django reads these class attributes as they are)
"""The pgq schema from migrations/0001_initial.sql, and the unmanaged models over it."""

from __future__ import annotations

from django.db import migrations, models

import pgq_django.models
from pgq_django.sql_migrations import ApplySqlMigration


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        ApplySqlMigration("0001_initial"),
        migrations.CreateModel(
            name="Job",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("queue", models.CharField(max_length=100, verbose_name="queue")),
                ("task", models.CharField(max_length=200, verbose_name="task")),
                ("args", models.JSONField(default=list, verbose_name="positional arguments")),
                ("kwargs", models.JSONField(default=dict, verbose_name="keyword arguments")),
                (
                    "priority",
                    models.IntegerField(
                        default=0, help_text="Higher runs first.", verbose_name="priority"
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("succeeded", "Succeeded"),
                            ("failed", "Failed"),
                            ("cancelled", "Cancelled"),
                        ],
                        max_length=16,
                        verbose_name="status",
                    ),
                ),
                ("attempts", models.IntegerField(default=0, verbose_name="attempts")),
                ("max_attempts", models.IntegerField(default=3, verbose_name="max attempts")),
                (
                    "run_at",
                    models.DateTimeField(
                        help_text="Not run before this time.", verbose_name="run at"
                    ),
                ),
                ("created_at", models.DateTimeField(verbose_name="created at")),
                ("started_at", models.DateTimeField(null=True, verbose_name="started at")),
                ("finished_at", models.DateTimeField(null=True, verbose_name="finished at")),
                ("worker_id", models.UUIDField(null=True, verbose_name="worker")),
                ("last_error", models.TextField(null=True, verbose_name="last error")),
                ("result", models.JSONField(null=True, verbose_name="result")),
                ("unique_key", models.TextField(null=True, verbose_name="unique key")),
                (
                    "cancel_requested",
                    models.BooleanField(default=False, verbose_name="cancel requested"),
                ),
            ],
            options={
                "verbose_name": "job",
                "verbose_name_plural": "jobs",
                "db_table": 'pgq"."jobs',
                "ordering": ("-id",),
                "permissions": (
                    ("retry_job", "Can retry failed or cancelled jobs"),
                    ("cancel_job", "Can cancel jobs"),
                ),
                "managed": False,
                "default_permissions": ("view", "delete"),
            },
        ),
        migrations.CreateModel(
            name="Worker",
            fields=[
                ("id", models.UUIDField(primary_key=True, serialize=False)),
                ("hostname", models.TextField(verbose_name="hostname")),
                ("pid", models.IntegerField(verbose_name="pid")),
                ("queues", pgq_django.models.TextArrayField(null=True, verbose_name="queues")),
                ("tasks", pgq_django.models.TextArrayField(verbose_name="tasks")),
                ("concurrency", models.IntegerField(verbose_name="concurrency")),
                ("started_at", models.DateTimeField(verbose_name="started at")),
                ("heartbeat_at", models.DateTimeField(verbose_name="last heartbeat")),
                ("expires_at", models.DateTimeField(verbose_name="lease expires at")),
            ],
            options={
                "verbose_name": "worker",
                "verbose_name_plural": "workers",
                "db_table": 'pgq"."workers',
                "ordering": ("started_at",),
                "managed": False,
                "default_permissions": ("view",),
            },
        ),
    ]
