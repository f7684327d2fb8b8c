from __future__ import annotations

import re

from django.db import models


class Report(models.Model):
    """A list of numbers to summarise (``make_report``) and to publish
    (``publish_report``), both in the background."""

    title = models.CharField(max_length=100)
    numbers = models.TextField(help_text="Numbers separated by spaces or commas.")
    summary = models.JSONField(null=True, blank=True)
    publish_tries = models.PositiveIntegerField(default=0)
    published_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-id",)

    def __str__(self) -> str:
        return self.title

    def parsed_numbers(self) -> list[float]:
        return parse_numbers(self.numbers)


def parse_numbers(text: str) -> list[float]:
    """'3, 1.5 -2' -> [3.0, 1.5, -2.0]; ValueError names a word that is not a number."""
    return [float(word) for word in re.split(r"[\s,;]+", text.strip()) if word]
