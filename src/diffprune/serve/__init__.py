"""Serving many tasks from one base model over HTTP (FastAPI + uvicorn)."""

from diffprune.serve.app import ServeLimits, create_app

__all__ = ["ServeLimits", "create_app"]
