"""Code that runs in the peers' own virtualenv (``bench/.venv-peers``), never in
the bench process: each peer's app (its tasks, for its own worker command) and
a driver script that installs its schema and enqueues jobs, printing JSON.

Nothing here imports pgq, and the bench process never imports these modules.
"""
