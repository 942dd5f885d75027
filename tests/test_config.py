"""The agent's config file is outside input: every bad key or value is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import AgentConfig, ConfigError


def test_defaults_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "agent.toml"
    f.write_text('[agent]\ncar_id = "car-7"\nbroker_port = 8883\nstatus_interval_s = 2\n')
    cfg = AgentConfig.load(f)
    assert (cfg.car_id, cfg.broker_port, cfg.status_interval_s, cfg.profile) == ("car-7", 8883, 2.0, "reference")
    assert AgentConfig.from_mapping({}, car_id="x1", broker_port=None).car_id == "x1"


@pytest.mark.parametrize("text,key", [
    ('[agent]\ncolour = "red"', "colour"),
    ('[agent]\nbroker_port = "1883"', "broker_port"),
    ('[agent]\nbroker_port = 70000', "broker_port"),
    ('[agent]\nbroker_port = true', "broker_port"),
    ('[agent]\ncar_id = "../etc"', "car_id"),
    ('[agent]\ntls_ca = "/ca.pem"', "tls_ca"),
    ('[agent]\nstatus_interval_s = 0', "status_interval_s"),
    ("[agent\n", "cannot read"),
])
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    f = tmp_path / "agent.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=key):
        AgentConfig.load(f)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        AgentConfig.load(tmp_path / "nope.toml")


@given(st.dictionaries(st.text(max_size=12), st.one_of(st.integers(), st.text(max_size=8), st.booleans(),
                                                       st.floats(allow_nan=True))))
def test_any_mapping_is_a_config_or_a_config_error(data: dict[str, object]) -> None:
    try:
        AgentConfig.from_mapping(data)
    except ConfigError:
        pass


def test_metrics_table_sets_the_listen_address(tmp_path: Path) -> None:
    f = tmp_path / "agent.toml"
    f.write_text('[agent]\ncar_id = "car-7"\n[metrics]\nlisten = "127.0.0.1:9464"\n')
    assert AgentConfig.load(f).metrics_listen == "127.0.0.1:9464"


@pytest.mark.parametrize("text,match", [
    ('[metrics]\nlisten = "localhost:9464"', "IP:PORT"),
    ('[metrics]\nlisten = "127.0.0.1:99999"', "IP:PORT"),
    ('[metrics]\nlisten = 9464', "must be str"),
    ('[metrics]\nport = 9464', "unknown config key 'port'"),
    ('[agent]\nmetrics_listen = "127.0.0.1:1"', "written as 'listen'"),
    ('[agents]\ncar_id = "x"', r"unknown config table \[agents\]"),
])
def test_bad_metrics_table_is_refused(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "agent.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        AgentConfig.load(f)
