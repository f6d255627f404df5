# flagdash: one image for web (gunicorn), worker and beat (Celery) and the migrate job.
# See docker-compose.yml; the commands differ, the image is the same.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLAGDASH_VAR_DIR=/app/var \
    HOST=0.0.0.0 \
    PORT=8000

RUN groupadd --system --gid 10001 flagdash \
    && useradd --system --uid 10001 --gid flagdash --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin flagdash

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY requirements/base.txt requirements/base.txt
RUN pip install --no-cache-dir -r requirements/base.txt

COPY . .

# Collect and compress static files into /app/var/static (whitenoise serves them). Importing
# the settings needs a SECRET_KEY: this one is thrown away with the build step. Then leave
# var/ writable by the app user (beat keeps its schedule there) and everything else read-only.
RUN SECRET_KEY=collectstatic-only-not-a-secret python manage.py collectstatic --noinput \
    && rm -rf /app/var/broker /app/var/cache /app/var/*.sqlite3* \
    && chown flagdash:flagdash /app/var

USER flagdash
EXPOSE 8000

CMD ["gunicorn", "-c", "flagdash/gunicorn.conf.py", "flagdash.wsgi"]
