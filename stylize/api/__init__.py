"""The REST API under /api/v1/: styles, jobs and tokens (Django REST framework)."""
