# Image for the web server, the Celery worker and beat (docker-compose.yml).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 1000 prisma
WORKDIR /app

# gettext: msgfmt, for compilemessages below.
RUN apt-get update && apt-get install -y --no-install-recommends gettext \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=prisma:prisma . .
RUN DEBUG=False SECRET_KEY=build-only python manage.py compilemessages --ignore=var -v 0 \
    && DEBUG=False SECRET_KEY=build-only python manage.py collectstatic --noinput

USER prisma
EXPOSE 8000
CMD ["gunicorn", "prisma_site.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "60"]
