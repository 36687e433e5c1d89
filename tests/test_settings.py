"""Settings: one validation for a flag and its ``OMFLOW_*`` twin, for every field.

Flags go through ``omflow.cli.main`` in this process (argparse exits with 2); the subprocess
tests in ``test_cli.py`` check the same refusals as an operator sees them."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omflow import cli
from omflow.clock import SYSTEM_CLOCK
from omflow.feeds import registry
from omflow.feeds.service import registry_for
from omflow.settings import (
    FEED_NAMES,
    Settings,
    SettingsError,
    describe,
    env_name,
    from_env,
    kind_of,
    parse_value,
    spec_of,
)

FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
NUMERIC = [name for name, f in FIELDS.items() if kind_of(f) in ("int", "float")]


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def refusal_by_flag(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """Run the CLI with ``args``; it must exit 2 with one line on stderr, which is returned."""
    with pytest.raises(SystemExit) as exited:
        cli.main(args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


def refusal_by_env(name: str, raw: str) -> str:
    with pytest.raises(SettingsError) as refused:
        from_env({env_name(name): raw})
    return str(refused.value)


def out_of_range(name: str) -> list[str]:
    """Values just outside the field's range, plus words that are no number at all."""
    spec, kind = spec_of(FIELDS[name]), kind_of(FIELDS[name])
    step = 1 if kind == "int" else 0.001
    bad = ["", "many", "nan", "inf", "1e400" if kind == "float" else "1.5"]
    if spec.low is not None:
        bad.append(str(int(spec.low - 1) if kind == "int" else spec.low - step))
    if spec.high is not None:
        bad.append(str(int(spec.high + 1) if kind == "int" else spec.high + step))
    return [b for b in bad if b]


def test_every_numeric_setting_has_a_range_and_every_field_a_spec() -> None:
    for name, f in FIELDS.items():
        spec = spec_of(f)
        assert spec.help, f"{name} has no help"
        if name in NUMERIC:
            assert spec.low is not None, f"{name} has no lower bound"
            assert spec.high is not None, f"{name} has no upper bound"


def test_every_default_is_accepted_by_its_own_spec() -> None:
    """A field's default, written out, passes its flag's validation (help never lies)."""
    defaults = Settings()
    for name in FIELDS:
        value = getattr(defaults, name)
        raw = str(value).lower() if isinstance(value, bool) else str(value)
        assert parse_value(name, raw) == value


@pytest.mark.parametrize("name", NUMERIC)
def test_a_numeric_flag_and_its_env_twin_refuse_the_same_values_the_same_way(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("OMFLOW_"):
            monkeypatch.delenv(key)
    spec, kind = spec_of(FIELDS[name]), kind_of(FIELDS[name])
    expected = f"expected {describe(spec, kind)}"
    for raw in out_of_range(name):
        by_flag = refusal_by_flag(capsys, ["serve", f"{flag_of(name)}={raw}"])
        by_env = refusal_by_env(name, raw)
        assert f"argument {flag_of(name)}: {expected}" in by_flag, by_flag
        assert by_env.startswith(f"{env_name(name)}: {expected}"), by_env
        # The message is the same after the name of where the value came from.
        assert by_flag.split(": ", 2)[2].startswith(by_env.split(": ", 1)[1])
        if spec.unit:
            assert spec.unit in by_flag


@given(raw=st.text(max_size=20))
def test_parse_value_only_ever_raises_settings_error(raw: str) -> None:
    for name, f in FIELDS.items():
        try:
            value = parse_value(name, raw)
        except SettingsError as error:
            message = str(error)
        else:
            message = "expected (accepted)"
            if isinstance(value, float):
                assert math.isfinite(value)
            spec = spec_of(f)
            if isinstance(value, int | float) and not isinstance(value, bool):
                assert spec.low is not None
                assert spec.high is not None
                assert spec.low <= value <= spec.high
        assert message.startswith("expected ")


def test_a_path_naming_an_unknown_home_is_refused_not_raised() -> None:
    with pytest.raises(SettingsError, match="home directory"):
        parse_value("data_dir", "~no-such-user-here/omflow")
    with pytest.raises(SettingsError, match="directory path"):
        parse_value("data_dir", "a\x00b")


def test_ports_outside_0_to_65535_are_refused() -> None:
    assert parse_value("port", "0") == 0
    assert parse_value("port", "65535") == 65535
    for raw in ("99999", "-1", "65536", "80.5"):
        with pytest.raises(SettingsError, match="whole number from 0 to 65535"):
            parse_value("port", raw)


def test_intervals_must_be_positive_seconds() -> None:
    for name in ("ping_interval", "slow_consumer_timeout", "handshake_timeout"):
        for raw in ("0", "-1", "-0.5"):
            with pytest.raises(SettingsError, match="seconds"):
                parse_value(name, raw)
    assert parse_value("ping_interval", "0.5") == 0.5


def test_feed_names_come_from_one_place(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in FEED_NAMES:
        assert from_env({"OMFLOW_FEED": name}).feed == name
    assert from_env({"OMFLOW_FEED": "demo, odds"}).feed == "demo,odds"
    # The registry builds exactly the names the settings accept.
    assert set(registry.FEED_NAMES) == set(FEED_NAMES) - {"none"}
    assert set(registry_for(SYSTEM_CLOCK).names()) == set(registry.FEED_NAMES)
    message = refusal_by_env("feed", "kalsh")
    listed = f"expected a comma-separated list of {', '.join(FEED_NAMES)}"
    assert message == f"OMFLOW_FEED: {listed}, not 'kalsh'"
    monkeypatch.setenv("OMFLOW_FEED", "kalsh")
    by_cli = refusal_by_flag(capsys, ["serve"])
    assert "OMFLOW_FEED" in by_cli
    assert "kalsh" in by_cli
    monkeypatch.delenv("OMFLOW_FEED")
    by_flag = refusal_by_flag(capsys, ["serve", "--feed", "kalsh"])
    assert listed in by_flag


def test_a_new_field_is_validated_by_flag_and_env_from_its_one_line() -> None:
    """``setting(...)`` is all a field needs: this builds a Settings-like class with one more."""
    from omflow.settings import convert, setting

    @dataclasses.dataclass(frozen=True, slots=True)
    class More:
        workers: int = setting(1, "processes", unit="processes", low=1, high=64)

    (f,) = dataclasses.fields(More)
    assert convert(spec_of(f), kind_of(f), "4") == 4
    with pytest.raises(SettingsError, match="whole number of processes from 1 to 64"):
        convert(spec_of(f), kind_of(f), "0")


def test_unknown_omflow_variables_are_left_to_whoever_reads_them() -> None:
    """Feed credentials (``OMFLOW_KALSHI_KEY_ID``) and test switches are not settings."""
    settings = from_env({"OMFLOW_KALSHI_KEY_ID": "x", "OMFLOW_REQUIRE_SERVICES": "1"})
    assert settings == Settings()


def test_settings_stay_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


def test_env_values_keep_their_types(tmp_path: Path) -> None:
    env: dict[str, Any] = {
        "OMFLOW_PORT": "8791",
        "OMFLOW_PING_INTERVAL": "0.5",
        "OMFLOW_ACCESS_LOG": "off",
        "OMFLOW_DATA_DIR": str(tmp_path),
        "OMFLOW_MESSAGE_RATE": "5",
    }
    settings = from_env(env)
    assert settings.port == 8791
    assert settings.ping_interval == 0.5
    assert settings.access_log is False
    assert settings.data_dir == tmp_path
    assert settings.message_rate == 5.0


def test_the_readme_lists_every_limit_with_its_default_and_flag() -> None:
    """«Limits and security» in the README: one row per numeric setting, true to the code."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Limits and security", 1)[1].split("\n## ", 1)[0]
    rows = {
        line.split("|")[3].strip(): line for line in section.splitlines() if line.startswith("| ")
    }
    for name in NUMERIC:
        if name == "port":
            continue  # a choice, not a limit
        flag = f"`{flag_of(name)}`"
        assert flag in rows, f"{flag} is missing from the README's limits"
        default = getattr(Settings(), name)
        shown = f"{default:,}".removesuffix(".0") if isinstance(default, float) else f"{default:,}"
        cells = [cell.strip() for cell in rows[flag].split("|")]
        assert cells[2].split()[0] == shown, (name, cells[2], shown)
