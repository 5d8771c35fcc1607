"""Settings: defaults, the environment and ``.env``, bool parsing, one-line errors, ``.env.example``."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from quartapp.config import (
    FIELDS,
    ROOT,
    Settings,
    SettingsError,
    config_key,
    load_settings,
    render_env_example,
    render_settings_table,
)
from quartapp.serve import hypercorn_config, tune_gc


def test_defaults_are_the_declared_ones() -> None:
    settings = load_settings(environ={}, env_file=None)
    assert settings.model_dump() == {name: field.default for name, field in Settings.model_fields.items()}
    assert settings.AI_PROVIDER == "local"
    assert settings.AI_STREAMING_ENABLED is True
    assert settings.PORT == 8000
    assert settings.MAX_BODY_BYTES == 64 * 1024
    assert settings.sse_enabled and settings.websocket_enabled


def test_every_setting_has_a_meaning() -> None:
    for name, field in Settings.model_fields.items():
        assert name.isupper(), name
        assert field.description and "\n" not in field.description, name


def test_environment_values_are_parsed_to_their_types() -> None:
    environ = {
        "AI_PROVIDER": "scripted",
        "PORT": "9001",
        "SCRIPTED_TOKEN_INTERVAL_MS": "2.5",
        "AI_STREAMING_ENABLED": "false",
        "STREAMING_BACKEND": "sse",
        "UNRELATED_VARIABLE": "ignored: the environment holds much more than our settings",
    }
    settings = load_settings(environ=environ, env_file=None)
    assert settings.AI_PROVIDER == "scripted"
    assert settings.PORT == 9001
    assert settings.SCRIPTED_TOKEN_INTERVAL_MS == 2.5
    assert settings.AI_STREAMING_ENABLED is False
    assert settings.sse_enabled and not settings.websocket_enabled


def test_environment_wins_over_env_file_and_overrides_win_over_both(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# a comment\nPORT=1234\nMAX_TOKENS=99\nAI_PROVIDER=openai\n")
    settings = load_settings(environ={"PORT": "5678"}, env_file=env_file)
    assert settings.PORT == 5678  # environment
    assert settings.MAX_TOKENS == 99  # file
    assert settings.AI_PROVIDER == "openai"
    settings = load_settings(environ={"PORT": "5678"}, env_file=env_file, PORT=4321, AI_PROVIDER="scripted")
    assert (settings.PORT, settings.AI_PROVIDER) == (4321, "scripted")


def test_missing_env_file_is_fine(tmp_path: Path) -> None:
    assert load_settings(environ={}, env_file=tmp_path / "absent.env").PORT == 8000


def test_settings_are_frozen() -> None:
    settings = load_settings(environ={}, env_file=None)
    with pytest.raises(ValueError):
        settings.PORT = 1  # type: ignore[misc]


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "True", "yes", "on", " On "])
def test_bool_true_spellings(raw: str) -> None:
    assert load_settings(environ={"AI_STREAMING_ENABLED": raw}, env_file=None).AI_STREAMING_ENABLED is True


@pytest.mark.parametrize("raw", ["0", "false", "FALSE", "no", "off", ""])
def test_bool_false_spellings(raw: str) -> None:
    assert load_settings(environ={"EVENT_TIMESTAMPS": "true", "AI_STREAMING_ENABLED": raw}, env_file=None) == (
        load_settings(environ={"EVENT_TIMESTAMPS": "true"}, env_file=None).model_copy(
            update={"AI_STREAMING_ENABLED": False}
        )
    )


def test_bool_from_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("AI_STREAMING_ENABLED=off\nEVENT_TIMESTAMPS=yes\n")
    settings = load_settings(environ={}, env_file=env_file)
    assert settings.AI_STREAMING_ENABLED is False
    assert settings.EVENT_TIMESTAMPS is True


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("AI_PROVIDER", "foo", ["one of", "local", "openai", "scripted"]),
        ("STREAMING_BACKEND", "carrier-pigeon", ["one of", "sse", "websocket", "both"]),
        ("PORT", "70000", ["an integer", "<= 65535"]),
        ("PORT", "-1", ["an integer", ">= 0"]),
        ("PORT", "eighty", ["an integer"]),
        ("AI_STREAMING_ENABLED", "maybe", ["true or false"]),
        ("SCRIPTED_TOKEN_INTERVAL_MS", "-5", ["a number", ">= 0"]),
        ("STREAM_DEADLINE_S", "0", ["a number", "> 0"]),
        ("STREAM_HISTORY_SIZE", "3", ["an integer", ">= 16"]),
        ("MAX_BODY_BYTES", "10", ["an integer", ">= 1024"]),
    ],
)
def test_bad_value_is_one_line_naming_variable_value_and_allowed(name: str, value: str, allowed: list[str]) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={name: value}, env_file=None)
    message = str(raised.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(f"{name}="), message
    assert repr(value) in message, message
    for word in allowed:
        assert word in message, message


def test_bad_value_in_env_file_is_reported_too(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=70000\n")
    with pytest.raises(SettingsError, match=r"^PORT='70000' is not allowed: expected an integer"):
        load_settings(environ={}, env_file=env_file)


def test_a_host_env_file_with_keys_of_its_own_is_fine(tmp_path: Path) -> None:
    """A host app's ``.env`` holds its own keys (DATABASE_URL): they are not ours to refuse."""
    env_file = tmp_path / ".env"
    env_file.write_text("AI_PROVIDER=scripted\nDATABASE_URL=postgres://db/app\n")
    assert load_settings(environ={}, env_file=env_file).AI_PROVIDER == "scripted"


def test_app_config_comes_first_with_the_ai_prefix(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MAX_TOKENS=100\nREDIS_URL=redis://from-env-file/0\n")
    config = {
        "AI_MAX_TOKENS": 50,  # app.config wins over the environment and .env
        "AI_PROVIDER": "scripted",  # already prefixed: not AI_AI_PROVIDER
        "REDIS_URL": "redis://the-hosts-own/1",  # the host's, not ours
        "SECRET_KEY": "the host's session key",  # Quart's own, never ours
        "DATABASE_URL": "postgres://db/app",
    }
    settings = load_settings(environ={"MAX_TOKENS": "70"}, env_file=env_file, config=config)
    assert (settings.MAX_TOKENS, settings.AI_PROVIDER) == (50, "scripted")
    assert settings.REDIS_URL == "redis://from-env-file/0" and settings.SECRET_KEY == ""
    assert config_key("REDIS_URL") == "AI_REDIS_URL" and config_key("AI_PROVIDER") == "AI_PROVIDER"


def test_a_bad_value_of_ours_in_app_config_stops_start_up() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={}, env_file=None, config={"AI_PORT": 70000})
    message = str(raised.value)
    assert message.startswith("PORT=70000 is not allowed: expected an integer") and "\n" not in message


def test_unknown_override_is_a_settings_error() -> None:
    """A misspelt override (tests, the benchmark) must be reported like any other bad setting."""
    with pytest.raises(SettingsError, match="MAX_TOKNES"):
        load_settings(environ={}, env_file=None, MAX_TOKNES=5)


def test_env_example_is_generated_from_the_settings() -> None:
    path = ROOT / ".env.example"
    if not path.is_file():  # the lead generates it; create it if this checkout lacks it
        path.write_text(render_env_example())
    assert path.read_text() == render_env_example(), "run: python -c 'from quartapp.config import render_env_example'"


def test_env_example_is_a_valid_env_file_with_every_setting(tmp_path: Path) -> None:
    text = render_env_example()
    keys = [line.split("=", 1)[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert keys == list(FIELDS)
    env_file = tmp_path / ".env"
    env_file.write_text(text)
    assert load_settings(environ={}, env_file=env_file) == load_settings(environ={}, env_file=None)


def test_hypercorn_config_follows_the_settings() -> None:
    settings = load_settings(environ={}, env_file=None, HOST="::1", PORT=8123, WS_MAX_MESSAGE_BYTES=4096)
    config = hypercorn_config(settings)
    assert config.bind == ["[::1]:8123"]
    assert config.backlog == settings.BACKLOG
    assert config.websocket_max_message_size == 4096
    assert config.read_timeout is None  # SSE clients send nothing after their request
    assert config.graceful_timeout == settings.GRACEFUL_TIMEOUT_S
    assert hypercorn_config(load_settings(environ={}, env_file=None)).bind == ["127.0.0.1:8000"]


def test_readme_lists_every_setting_as_the_code_declares_it() -> None:
    readme = (ROOT / "README.md").read_text()
    assert render_settings_table() in readme, "regenerate the README's table: quartapp.config.render_settings_table()"


def test_the_server_collects_garbage_rarely_and_never_rescans_startup_objects() -> None:
    before = gc.get_threshold()
    try:
        tune_gc(load_settings(environ={"GC_GEN0_THRESHOLD": "0"}, env_file=None))
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0
        tune_gc(load_settings(environ={}, env_file=None))
        assert gc.get_threshold() == (50_000, before[1], before[2])
        assert gc.get_freeze_count() > 1000  # the modules and objects alive at startup
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
