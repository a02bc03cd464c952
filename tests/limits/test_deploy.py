"""The deployment files, linted always: Dockerfile (slim, non-root, health check, ``tollway
serve``), docker-compose.yml (tollway ×2 behind an SSE-ready proxy, PostgreSQL, Redis), the
proxy and tollway configs. The image is built and served only where a Docker daemon runs."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tollway.config import load_settings

ROOT = Path(__file__).resolve().parents[2]


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile() -> None:
    steps = _instructions()
    words = [w for w, _ in steps]
    assert set(words) <= {"FROM", "WORKDIR", "COPY", "RUN", "USER", "ENV", "EXPOSE",
                          "HEALTHCHECK", "ENTRYPOINT", "CMD", "ARG", "LABEL"}  # fmt: skip
    bases = [rest for w, rest in steps if w == "FROM"]
    assert bases and all("slim" in b for b in bases)
    final = words[len(words) - 1 - words[::-1].index("FROM"):]  # the last stage
    user = [rest for w, rest in steps[len(steps) - len(final):] if w == "USER"]
    assert user and user[-1] not in ("root", "0")
    health = dict(steps)["HEALTHCHECK"]
    assert "/health" in health and "--interval" in health
    assert dict(steps)["ENTRYPOINT"] == '["tollway", "serve"]'
    assert "EXPOSE" in words and "8080" in dict(steps)["EXPOSE"]
    runs = " ".join(rest for w, rest in steps if w == "RUN")
    assert ".[postgres]" in runs  # the driver of a shared deployment (Redis needs none)


def test_compose() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "tollway-1", "tollway-2", "proxy"} <= set(services)
    for name in ("tollway-1", "tollway-2"):
        svc = services[name]
        assert svc["build"] == "."
        assert "ports" not in svc  # reached only through the proxy
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        mounts = [m.split(":") for m in svc["volumes"]]
        assert ["./deploy/tollway.yaml", "/etc/tollway/tollway.yaml", "ro"] in mounts
    proxy = services["proxy"]
    assert any(p.startswith("127.0.0.1:") for p in proxy["ports"])
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["redis"]
    for path in ("deploy/tollway.yaml", "deploy/nginx.conf"):
        assert (ROOT / path).is_file()


def test_proxy_is_configured_for_sse() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    directives = dict(
        re.findall(r"^\s*([a-z_]+)\s+([^;{]+);", conf, flags=re.MULTILINE)
    )
    assert directives["proxy_buffering"] == "off"
    assert directives["proxy_cache"] == "off"
    assert directives["proxy_http_version"] == "1.1"
    assert int(directives["proxy_read_timeout"].rstrip("s")) >= 900  # timeouts.total
    assert re.search(r"server tollway-1:8080", conf) and re.search(r"server tollway-2:8080", conf)
    assert conf.count("{") == conf.count("}")


def test_tollway_config_is_valid_and_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLWAY_ADMIN_KEY", "test")
    settings = load_settings(ROOT / "deploy" / "tollway.yaml")
    assert settings.database.startswith("postgresql://") and "@postgres:" in settings.database
    assert settings.redis == "redis://redis:6379/0"
    assert settings.server.host == "0.0.0.0" and settings.server.port == 8080
    assert settings.limits.on_store_error == "allow"


def _docker_daemon() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow
def test_image_builds_and_serves() -> None:
    if os.environ.get("TOLLWAY_DOCKER_TESTS") != "1" or not _docker_daemon():
        pytest.skip("building the image needs a Docker daemon and TOLLWAY_DOCKER_TESTS=1")
    tag = "tollway:test"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=900)
    out = subprocess.run(["docker", "run", "--rm", "--entrypoint", "tollway", tag, "--help"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0 and "serve" in out.stdout
