"""docker-compose.yml cannot run here (no Docker engine): read it and check it."""

import re

import yaml

from tests.helpers import BASE_DIR

APP_SERVICES = ["web", "worker", "worker-large", "worker-previews", "trainer",
                "worker-own-styles", "beat"]


def compose():
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())


def variables_read_by_settings() -> set[str]:
    source = (BASE_DIR / "prisma_site" / "settings.py").read_text()
    return set(re.findall(r"\benv(?:\.\w+)?\(\s*[\"'](\w+)[\"']", source))


def test_settings_reader_finds_the_variables():
    read = variables_read_by_settings()
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "EMAIL_URL", "DEBUG"} <= read


def test_every_variable_the_app_services_set_is_read_by_settings():
    read = variables_read_by_settings()
    services = compose()["services"]
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        unknown = set(environment) - read
        assert not unknown, f"{name} sets variables the settings never read: {unknown}"


def test_app_services_run_in_production_mode_against_tfserving():
    services = compose()["services"]
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert environment["DEBUG"] == "False"
        assert environment["MODEL_BACKEND"] == "tfserving"
        assert environment["TFSERVING_ADDRESS"] == "tfserving:8500"
        assert environment["DATABASE_URL"].startswith("postgres://")
        password = "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}"
        assert environment["REDIS_URL"] == f"redis://:{password}@redis:6379/0"
        assert environment["CACHE_URL"] == f"redis://:{password}@redis:6379/1"
        assert environment["SITE_URL"].startswith("${SITE_URL:?")


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies():
    services = compose()["services"]
    assert {"web", "worker", "beat", "redis", "postgres", "tfserving", "proxy"} <= set(services)
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services
            assert condition == {"condition": "service_healthy"}


def test_tfserving_polls_the_model_config_from_the_serving_folder():
    tfserving = compose()["services"]["tfserving"]
    assert tfserving["image"].startswith("tensorflow/serving:")
    command = tfserving["command"]
    assert "--model_config_file=/models/models.config" in command
    assert any(arg.startswith("--model_config_file_poll_wait_seconds=") for arg in command)
    assert "./serving:/models:ro" in tfserving["volumes"]
    assert (BASE_DIR / "serving" / "models.config").is_file()
    web_env = compose()["services"]["web"]["environment"]
    assert web_env["TFSERVING_MODEL_BASE_PATH"] == "/models/models"


def test_web_serves_with_gunicorn_and_the_image_builds_from_requirements():
    assert "gunicorn" in compose()["services"]["web"]["command"]
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert "pip install -r requirements.txt" in dockerfile
    assert "collectstatic" in dockerfile


# --- Reverse proxy and Redis (docs/design/security.md) ---------------------------------


def caddyfile() -> str:
    text = (BASE_DIR / "deploy" / "Caddyfile").read_text()
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())  # no comments


def test_only_the_proxy_is_published_and_it_is_caddy_in_front_of_web():
    services = compose()["services"]
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:")  # the official image
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert proxy["depends_on"] == {"web": {"condition": "service_healthy"}}
    assert {"80:80", "443:443"} <= set(proxy["ports"])
    published = {name for name, service in services.items() if service.get("ports")}
    assert published <= {"proxy", "tfserving"}  # not web, redis or postgres
    assert "web" not in published
    assert re.search(r"reverse_proxy\s+web:8000\b", caddyfile())


def test_the_proxy_limits_bodies_to_what_web_accepts():
    services = compose()["services"]
    web, proxy = services["web"]["environment"], services["proxy"]["environment"]
    assert web["REQUEST_BODY_MAX_BYTES"] == proxy["REQUEST_BODY_MAX_BYTES"]
    default = int(re.fullmatch(r"\$\{REQUEST_BODY_MAX_BYTES:-(\d+)\}",
                               proxy["REQUEST_BODY_MAX_BYTES"]).group(1))
    assert default == 20 * 1024 * 1024 + 256 * 1024  # settings.REQUEST_BODY_MAX_BYTES
    limit = re.search(r"request_body\s*\{\s*max_size\s+\{\$REQUEST_BODY_MAX_BYTES:(\d+)\}\s*\}",
                      caddyfile())
    assert limit and int(limit.group(1)) == default


def test_the_proxy_sets_x_forwarded_for_and_web_trusts_exactly_one_proxy():
    services = compose()["services"]
    assert services["web"]["environment"]["NUM_PROXIES"] == "1"
    for name in ["worker", "worker-large", "worker-previews", "trainer", "worker-own-styles",
                 "beat"]:  # no requests
        assert "NUM_PROXIES" not in services[name]["environment"]
    # Caddy sets X-Forwarded-For itself and drops a client's own unless the client is a
    # trusted proxy: none may be configured, or a client could choose its address.
    text = caddyfile()
    assert "trusted_proxies" not in text and "X-Forwarded-For" not in text


def test_the_proxy_sends_no_server_banner():
    text = caddyfile()
    assert re.search(r"^\s*header\s+-Server\s*$", text, re.MULTILINE)
    assert re.search(r"header_down\s+-Server", text)


def test_redis_requires_the_password_the_app_services_use():
    redis = compose()["services"]["redis"]
    command = " ".join(redis["command"])
    assert '--requirepass "$$REDIS_PASSWORD"' in command
    assert redis["environment"]["REDIS_PASSWORD"] == "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}"
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    assert "ports" not in redis


def test_users_files_have_their_own_volume_that_the_proxy_never_sees():
    services = compose()["services"]
    environment = services["web"]["environment"]
    assert environment["PRIVATE_MEDIA_ROOT"] == "/app/var/private"
    # Workers write results and previews, web streams them.
    for name in ("web", "worker", "worker-large", "worker-previews"):
        assert "private:/app/var/private" in services[name]["volumes"], name
    proxy_volumes = services["proxy"]["volumes"]
    assert "media:/srv/media:ro" in proxy_volumes  # paintings and samples
    assert not any(volume.startswith("private:") for volume in proxy_volumes)
    assert "private" in compose()["volumes"]
    assert re.search(r"handle_path\s+/media/\*\s*\{\s*root \* /srv/media\s+file_server",
                     caddyfile())
