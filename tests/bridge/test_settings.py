"""Settings: the TOML file, PSTN_BRIDGE_* overrides, and errors that name the option."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from bridge.settings import Settings, SettingsError, load_settings

EXAMPLE = Path(__file__).parents[2] / "config" / "bridge.example.toml"


def _options(model: type[BaseModel], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, info in model.model_fields.items():
        ann = info.annotation
        item = typing.get_args(ann)[0] if typing.get_origin(ann) is list else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out |= _options(ann, f"{prefix}{name}.")
        elif isinstance(item, type) and issubclass(item, BaseModel):
            out |= _options(item, f"{prefix}{name}.")
        else:
            out.add(prefix + name)
    return out


def _keys(table: dict[str, object], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in table.items():
        if isinstance(value, dict):
            out |= _keys(value, f"{prefix}{key}.")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out |= _keys(value[0], f"{prefix}{key}.")
        else:
            out.add(prefix + key)
    return out


def test_example_documents_every_option_with_its_default() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    commented = {
        "trunks.username",
        "trunks.password",
        "carrier_sim.hangup_after",
        "carrier_sim.media_port_range",
        "sip.media_port_range",
    }  # shown commented out: no TOML null
    documented = _keys(data) | commented
    assert documented == _options(Settings)
    assert load_settings(EXAMPLE) == load_settings(None)


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSTN_BRIDGE_SIP__LISTEN_PORT", "5071")
    settings = load_settings(EXAMPLE)
    assert settings.sip.listen_port == 5071
    assert settings.sip.realm == "pstn-bridge"  # the rest of the section still comes from the file


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        (
            "[sip]\nlisten_port = 70000\n",
            "option sip.listen_port: Input should be less than or equal to 65535",
        ),
        ("[sip]\nlisten_prot = 5061\n", "option sip.listen_prot: unknown option"),
        ('[http]\nlisten_host = "example.com"\n', "option http.listen_host"),
        ("[http]\nhsts_max_age = 60\n", "option http.hsts_max_age"),
        ("[sip\n", "not valid TOML"),
    ],
)
def test_invalid_file_names_the_option(tmp_path: Path, toml: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert needle in str(info.value)


def test_invalid_environment_names_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSTN_BRIDGE_LOG__LEVEL", "LOUD")
    with pytest.raises(SettingsError, match=r"option log\.level"):
        load_settings(None)


def test_serve_exits_non_zero_with_the_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[sip]\nlisten_port = -1\n")
    done = subprocess.run(
        [sys.executable, "-m", "bridge.ops.cli", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "option sip.listen_port" in done.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="No such file"):
        load_settings(tmp_path / "absent.toml")


def test_trunk_errors_name_the_trunk_option_and_never_the_password(tmp_path: Path) -> None:
    path = tmp_path / "trunks.toml"
    path.write_text(
        '[[trunks]]\nname = "a"\nhost = "sbc.example.net"\nusername = "acct"\n'
        'password = "hunter2-secret"\ncrypto_suites = ["NULL_CIPHER"]\n'
    )
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    text = str(info.value)
    assert "option trunks.0.crypto_suites.0" in text
    assert "hunter2-secret" not in text


def test_trunk_password_is_hidden_and_names_are_unique(tmp_path: Path) -> None:
    path = tmp_path / "trunks.toml"
    one = '[[trunks]]\nname = "a"\nhost = "sbc.example.net"\nusername = "u"\npassword = "pw-9f1c"\n'
    path.write_text(one)
    settings = load_settings(path)
    assert "pw-9f1c" not in repr(settings)
    assert settings.trunks[0].password is not None
    assert settings.trunks[0].password.get_secret_value() == "pw-9f1c"
    path.write_text(one + one)
    with pytest.raises(SettingsError, match="trunk names must be unique"):
        load_settings(path)
