from tests.acceptance.processes import start_worker

__all__ = ["start_worker"]
