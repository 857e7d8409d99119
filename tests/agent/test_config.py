"""Configuration: defaults, validation messages (path, value, what is allowed), env overrides."""

from __future__ import annotations

import pytest

from pybpf_agent.config import DEFAULT_PORT, load_config, parse_listen
from pybpf_agent.schema import ConfigError


def write(tmp_path, text: str) -> str:
    p = tmp_path / "agent.yaml"
    p.write_text(text)
    return str(p)


def test_embedded_default_is_valid():
    cfg = load_config(environ={})
    assert cfg["listen"] == f"0.0.0.0:{DEFAULT_PORT}" and DEFAULT_PORT != 9435
    assert set(cfg["collectors"]) >= {"syscalls", "process", "sched", "block", "tcp", "network",
                                      "drops", "memory", "user"}
    assert cfg["collectors"]["syscalls"]["hooks"][0] == "raw_tp"


@pytest.mark.parametrize("text, path, words", [
    ("collectors:\n  syscals: {}\n", "collectors.syscals", ["unknown key", "did you mean 'syscalls'"]),
    ("collectors:\n  syscalls:\n    sampling: often\n", "collectors.syscalls.sampling",
     ["'often'", "an integer"]),
    ("collectors:\n  syscalls:\n    enabled: 3\n", "collectors.syscalls.enabled", ["3", "true or false"]),
    ("listen: 127.0.0.1:70000\n", "listen", ["out of range", "1-65535"]),
    ("listen: nonsense\n", "listen", ["ADDR:PORT"]),
    ("log:\n  format: xml\n", "log.format", ["'xml'", "'json'"]),
    ("performance:\n  ringbuf_size: 5000\n", "performance.ringbuf_size", ["power of two"]),
    ("- a\n- b\n", None, ["top level must be a mapping"]),
])
def test_bad_values_name_path_value_and_allowed(tmp_path, text, path, words):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text), environ={})
    msg = str(e.value)
    assert "\n" not in msg
    if path:
        assert msg.startswith(path + ":")
    for w in words:
        assert w in msg


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/pybpf-agent.yaml", environ={})


def test_yaml_syntax_error_has_position(tmp_path):
    with pytest.raises(ConfigError, match="invalid YAML at line"):
        load_config(write(tmp_path, "collectors: [\n"), environ={})


def test_file_merges_over_default(tmp_path):
    cfg = load_config(write(tmp_path, "collectors:\n  sched:\n    enabled: false\n"), environ={})
    assert cfg["collectors"]["sched"]["enabled"] is False
    assert cfg["collectors"]["syscalls"]["enabled"] is True
    assert cfg["collectors"]["sched"]["hooks"] == ["tp_btf", "raw_tp"]


def test_env_overrides():
    env = {"PYBPF_AGENT__COLLECTORS__SYSCALLS__ENABLED": "false",
           "PYBPF_AGENT__LISTEN": "127.0.0.1:9999",
           "PYBPF_AGENT__collectors__network__interfaces": "[eth0, eth1]",
           "UNRELATED": "x"}
    cfg = load_config(environ=env)
    assert cfg["collectors"]["syscalls"]["enabled"] is False
    assert cfg["listen"] == "127.0.0.1:9999"
    assert cfg["collectors"]["network"]["interfaces"] == ["eth0", "eth1"]


def test_env_override_errors():
    with pytest.raises(ConfigError, match="did you mean 'enabled'"):
        load_config(environ={"PYBPF_AGENT__COLLECTORS__SYSCALLS__ENABLD": "false"})
    with pytest.raises(ConfigError, match="collectors.syscalls.sampling"):
        load_config(environ={"PYBPF_AGENT__COLLECTORS__SYSCALLS__SAMPLING": "zero"})


def test_command_line_overrides_win():
    cfg = load_config(environ={"PYBPF_AGENT__LISTEN": "127.0.0.1:1"}, overrides={"listen": "[::1]:2"})
    assert parse_listen(cfg["listen"]) == ("::1", 2)


def test_unknown_hook_name_rejected():
    from pybpf_agent.agent import check_collectors
    cfg = load_config(environ={"PYBPF_AGENT__COLLECTORS__SYSCALLS__HOOKS": "[raw_tpp]"})
    with pytest.raises(ConfigError) as e:
        check_collectors(cfg)
    assert str(e.value).startswith("collectors.syscalls.hooks[0]:") and "did you mean 'raw_tp'" in str(e.value)
    cfg = load_config(environ={"PYBPF_AGENT__COLLECTORS__SYSCALLS__HOOKS": "[tracepoint/raw_syscalls/x]"})
    check_collectors(cfg)   # KIND/TARGET is fine


def test_user_program_validation(tmp_path):
    from pybpf_agent.agent import check_collectors
    text = ("collectors:\n  user:\n    programs:\n      - object: /x.bpf.o\n        histograms:\n"
            "          - {name: h, labels: [{name: dev, size: 4}]}\n")
    cfg = load_config(write(tmp_path, text), environ={})
    with pytest.raises(ConfigError, match="last label of a histogram must be `bucket`"):
        check_collectors(cfg)
