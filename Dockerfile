# The Alliance service, built from this repository.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# pyproject.toml maps these three folders into the one package `alliance` (package-dir), so
# `pip install .` needs exactly them beside it; .dockerignore keeps the rest of the checkout out.
COPY pyproject.toml README.md ./
COPY core ./core
COPY plugins ./plugins
COPY api ./api
# Without the `embedded` extra: the container always connects to DATABASE_URL, and every
# runtime dependency has wheels for linux/amd64 and linux/arm64 (.ci/run checks arm64).
RUN pip install . && useradd --system --home /var/lib/alliance alliance \
    && mkdir -p /var/lib/alliance && chown alliance /var/lib/alliance
USER alliance
ENV ALLIANCE_HOME=/var/lib/alliance ALLIANCE_LOG_FORMAT=json
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/health'); sys.exit(0)"
CMD ["alliance", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
