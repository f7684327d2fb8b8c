from __future__ import annotations

from django.apps import AppConfig


class DiscoveredConfig(AppConfig):
    name = "tests.django.discovered"
    label = "discovered"
