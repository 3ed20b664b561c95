FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    EXPERIMENTS_ALEMBIC_INI=/app/alembic.ini \
    DATABASE_URL=sqlite+aiosqlite:////data/experiments.db

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY src ./src
COPY migrations ./migrations
RUN pip install . \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /data && chown app:app /data

USER app
EXPOSE 8000
CMD ["experiments", "serve", "--host", "0.0.0.0", "--port", "8000"]
