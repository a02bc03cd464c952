# tollway: slim, non-root, `tollway serve` as the entrypoint, with a health check.
# Build: docker build -t tollway .   Run: see docker-compose.yml and README "Running several instances".
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tollway ./tollway
RUN pip install --no-cache-dir --prefix=/install ".[postgres]"

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --home-dir /var/lib/tollway --create-home tollway
USER tollway
WORKDIR /var/lib/tollway
ENV PYTHONUNBUFFERED=1 TOLLWAY_CONFIG=/etc/tollway/tollway.yaml \
    MALLOC_ARENA_MAX=2
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2).status != 200)"]
ENTRYPOINT ["tollway", "serve"]
CMD ["--config", "/etc/tollway/tollway.yaml"]
