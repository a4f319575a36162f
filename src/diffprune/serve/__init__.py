"""Serving many tasks from one base model over HTTP (FastAPI + uvicorn, the ``serve`` extra).

``diffprune.serve.app.create_app`` builds the API; ``diffprune.serve.limits.ServeLimits`` bounds
requests. Nothing is imported here, so ``diffprune`` works without the web dependencies.
"""
