#!/usr/bin/env python
"""Django's command-line utility for the example site (DATABASE_URL must be set;
``python run.py`` sets it up and runs everything)."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
