"""ASGI entry point for uvicorn: `uvicorn api.main:app`."""

from api.app import create_app
from core import heap

app = create_app()
# A serving process: the app and, once loaded, the policy set and warm-up state are kept out of
# the collector's full collections (see core.heap).
heap.manage()
