from __future__ import annotations

from django.contrib import admin

from .models import Report


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "title", "created_at", "published_at")
    readonly_fields = ("summary", "publish_tries", "published_at", "created_at")
