"""Settings are declared once; the docs must list every one of them (datasette's test_docs pattern)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hall_server.app import create_app
from hall_server.settings import SETTINGS, load_settings, settings_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_every_setting_is_documented_with_its_current_default():
    text = DOCS.read_text()
    assert settings_markdown() in text, "docs/settings.md is stale: run `invigil-server settings --markdown`"
    for setting in SETTINGS:
        assert f"`{setting.env_var}`" in text


def test_environment_then_test_config_override_defaults():
    values = load_settings(
        {"INVIGIL_CLOCK_SKEW_MAX_S": "5", "INVIGIL_TRUST_PROXY_HEADERS": "yes"}, {"clock_skew_max_s": 7}
    )
    assert values["clock_skew_max_s"] == 7
    assert values["trust_proxy_headers"] is True
    assert load_settings({})["capture_max_bytes"] == 8 * 1024 * 1024


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"INVIGIL_CLOCK_SKEW_MAX_S": "soon"}, "whole number"),
        ({"INVIGIL_TRUST_PROXY_HEADERS": "maybe"}, "true or false"),
        ({"INVIGIL_SQLITE_SYNCHRONOUS": "OFF"}, "FULL, NORMAL"),
        ({"INVIGIL_CAPTURE_GAP_S": "-5"}, "0 or more seconds"),
        ({"INVIGIL_CAPTURE_GAP_SWEEP_S": "0"}, "more than 0 seconds"),
        ({"INVIGIL_CAPTURE_GAP_SWEEP_S": "often"}, "a number"),
    ],
)
def test_bad_environment_values_say_what_is_expected(env, message):
    with pytest.raises(ValueError, match=message):
        load_settings(env)


def test_a_typo_in_test_config_is_an_error_not_a_silent_default(tmp_path):
    with pytest.raises(KeyError, match="capture_max_byte"):
        create_app({"data_dir": str(tmp_path), "capture_max_byte": 1})
