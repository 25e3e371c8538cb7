"""The FastAPI application: one router per domain, served by ``vigil api``."""
