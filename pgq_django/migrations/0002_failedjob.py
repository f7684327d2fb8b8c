# ruff: noqa: RUF012  (Django reads these class attributes as they are)
"""The "Failed jobs" proxy of the admin: no table, no permissions of its own."""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("pgq_django", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="FailedJob",
            fields=[],
            options={
                "verbose_name": "failed job",
                "verbose_name_plural": "failed jobs",
                "proxy": True,
                "default_permissions": (),
                "indexes": [],
                "constraints": [],
            },
            bases=("pgq_django.job",),
        ),
    ]
