# One image for web, worker and beat. The GPU worker builds with --build-arg TF_PACKAGE=tensorflow[and-cuda].
FROM python:3.11-slim
ARG TF_PACKAGE=tensorflow-cpu==2.21.0
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN grep -v '^tensorflow-cpu' requirements.txt > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt "${TF_PACKAGE}"
COPY . .
RUN DJANGO_SECRET_KEY=build-only-secret-key-build-only-secret-key-0000 DJANGO_DEBUG=true \
    python manage.py collectstatic --noinput --verbosity 0
RUN useradd --create-home sneakers && mkdir -p /app/var && chown -R sneakers /app/var
USER sneakers
EXPOSE 8000
CMD ["gunicorn", "sneakers.wsgi:application", "--bind", "0.0.0.0:8000", "--reuse-port", "--workers", "3", "--threads", "8", "--timeout", "60"]
