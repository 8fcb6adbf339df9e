"""docker-compose.yml cannot run here (no Docker engine): read it and check it."""

import re
from pathlib import Path

import yaml

BASE_DIR = Path(__file__).resolve().parent.parent
APP_SERVICES = ["web", "worker", "trainer", "beat"]


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
        assert environment["REDIS_URL"] == "redis://redis:6379/0"


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies():
    services = compose()["services"]
    assert {"web", "worker", "beat", "redis", "postgres", "tfserving"} <= set(services)
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
