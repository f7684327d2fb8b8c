"""The Django app for pgq (built out in its own issue)."""
