# ruff: noqa: RUF012  (Django reads these class attributes as they are)
"""The periodic schedules table and the finished-jobs index of
migrations/0002_schedules_and_retention.sql."""

from __future__ import annotations

from django.db import migrations

from pgq_django.sql_migrations import ApplySqlMigration


class Migration(migrations.Migration):
    dependencies = [("pgq_django", "0002_failedjob")]

    operations = [ApplySqlMigration("0002_schedules_and_retention")]
