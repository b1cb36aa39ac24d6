"""The daemon's configuration: defaults, the shipped file, and every kind of bad input."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest

from ipamguard.config import (
    DEFAULT_CONFIG_PATH,
    AlertsConfig,
    Config,
    LogConfig,
    MetricsConfig,
    PathsConfig,
    PodmanConfig,
    RepairConfig,
    WatchConfig,
    config_changes,
    config_keys,
    default_config_path,
    load_config,
    parse_config,
    warnings,
)
from ipamguard.context import resolve_config
from ipamguard.errors import ConfigError, IpamguardError

PACKAGED = Path(__file__).resolve().parents[1] / "packaging" / "ipamguard.toml"


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "ipamguard.toml")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_are_safe() -> None:
    config = Config()
    assert config.repair == RepairConfig(False, 60.0, ("leaked", "stale", "dangling"))
    assert config.podman == PodmanConfig(None, 5.0)  # podman's own socket
    assert config.watch == WatchConfig(300.0, 0.25)
    assert config.paths == PathsConfig(None, None, None, 20)  # podman's own paths
    assert config.log == LogConfig("info", "auto")
    assert parse_config("") == config


def test_the_packaged_file_is_exactly_the_defaults() -> None:
    assert load_config(str(PACKAGED)) == Config()


def test_the_packaged_file_names_every_key() -> None:
    """Set to its default, or shown commented out where the default is podman's own."""
    text = PACKAGED.read_text()
    document = tomllib.loads(text)
    commented = tomllib.loads(re.sub(r"^# (\w+ = .*)$", r"\1", text, flags=re.MULTILINE))
    assert {s: tuple(t) for s, t in commented.items()} == config_keys()
    unset = {(s, k) for s, keys in config_keys().items() for k in keys} - {
        (s, k) for s, t in document.items() for k in t
    }
    assert unset == {("podman", "url"), ("paths", "db"), ("paths", "network_dir"),
                     ("paths", "backup_dir"), ("metrics", "textfile")}  # fmt: skip


def test_every_key_can_be_set() -> None:
    config = parse_config(
        """
        [repair]
        enabled = true
        grace_seconds = 0
        kinds = ["leaked", "orphan-network", "malformed"]
        [podman]
        url = "tcp://127.0.0.1:8080"
        timeout_seconds = 0.5
        [watch]
        resync_seconds = 30
        debounce_seconds = 0
        [paths]
        db = "/tmp/x//ipam.db"
        network_dir = "/tmp/n"
        backup_dir = "/tmp/b"
        backups_keep = 1
        [log]
        level = "debug"
        format = "json"
        """
    )
    assert config.repair == RepairConfig(True, 0.0, ("leaked", "orphan-network", "malformed"))
    assert config.podman == PodmanConfig("tcp://127.0.0.1:8080", 0.5)
    assert config.watch == WatchConfig(30.0, 0.0)
    assert config.paths == PathsConfig("/tmp/x/ipam.db", "/tmp/n", "/tmp/b", 1)
    assert config.log == LogConfig("debug", "json")
    assert isinstance(config.repair.grace_seconds, float)
    # a partial section keeps the other defaults
    assert parse_config("[repair]\nenabled = true\n").repair.grace_seconds == 60.0


def test_the_example_message() -> None:
    assert error_of("[repair]\ngrace_seconds = 'x'\n") == (
        "ipamguard.toml: [repair] grace_seconds: expected seconds between 0 and 86400, got 'x'"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # unknown names
        ("[reapir]\n", r"unknown section \[reapir\] \(known: \[repair\], \[podman\]"),
        ("enabled = true\n", r"unknown top-level key 'enabled' \(keys belong in a section"),
        ("[repair]\nenable = true\n", r"\[repair\] unknown key 'enable' \(known: enabled,"),
        ("[repair.extra]\nx = 1\n", r"\[repair\] unknown key 'extra'"),
        ("repair = 1\n", r"\[repair\]: expected a table, got 1"),
        # wrong types
        ("[repair]\nenabled = 'yes'\n", r"\[repair\] enabled: expected true or false, got 'yes'"),
        ("[repair]\nenabled = 1\n", r"enabled: expected true or false, got 1$"),
        (
            "[repair]\ngrace_seconds = true\n",
            r"grace_seconds: expected seconds between 0 and 86400, got true",
        ),
        (
            "[repair]\ngrace_seconds = -1\n",
            r"grace_seconds: expected seconds between 0 and 86400, got -1",
        ),
        (
            "[repair]\ngrace_seconds = nan\n",
            r"grace_seconds: expected seconds between 0 and 86400, got nan",
        ),
        (
            "[repair]\ngrace_seconds = inf\n",
            r"grace_seconds: expected seconds between 0 and 86400, got inf",
        ),
        (
            "[repair]\nkinds = 'leaked'\n",
            r"kinds: expected a list of distinct kinds from leaked, stale,",
        ),
        ("[repair]\nkinds = ['leaked', 'gone']\n", r"got \['leaked', 'gone'\]"),
        ("[repair]\nkinds = ['leaked', 'leaked']\n", r"expected a list of distinct kinds"),
        ("[repair]\nkinds = [1]\n", r"kinds: expected a list .*got \[1\]"),
        (
            "[podman]\ntimeout_seconds = 0\n",
            r"\[podman\] timeout_seconds: expected seconds, more than 0 and at most 300, got 0",
        ),
        ("[podman]\nurl = '/run/podman/podman.sock'\n", r"url: expected a URL such as unix:///run"),
        ("[podman]\nurl = 'unix://relative.sock'\n", r"url: expected a URL"),
        ("[podman]\nurl = 'tcp://host'\n", r"url: expected a URL"),
        ("[podman]\nurl = 'ssh://root@host/run/podman.sock'\n", r"url: expected a URL"),
        ("[podman]\nurl = 5\n", r"url: expected a URL .*got 5"),
        ("[watch]\nresync_seconds = 0\n", r"\[watch\] resync_seconds: expected seconds, more"),
        # bounds that mean something (the adversarial pass: 1e300 overflowed a timer)
        (
            "[podman]\ntimeout_seconds = 1e300\n",
            r"timeout_seconds: expected seconds, .*got 1e\+300",
        ),
        ("[watch]\nresync_seconds = 1e300\n", r"resync_seconds: expected seconds"),
        (
            "[watch]\ndebounce_seconds = 600\n",
            r"debounce_seconds: expected seconds between 0 and 60",
        ),
        ("[repair]\ngrace_seconds = 1e300\n", r"grace_seconds: expected seconds between"),
        ("[paths]\nbackups_keep = 0\n", r"backups_keep: expected a whole number of at least 1"),
        (
            "[watch]\ndebounce_seconds = '1s'\n",
            r"debounce_seconds: expected seconds between 0 and 60, got '1s'",
        ),
        ("[paths]\ndb = 'ipam.db'\n", r"\[paths\] db: expected an absolute path, got 'ipam.db'"),
        ("[paths]\nbackup_dir = 3\n", r"backup_dir: expected an absolute path, got 3"),
        (
            "[paths]\nbackups_keep = 2.5\n",
            r"backups_keep: expected a whole number of at least 1 .*got 2.5",
        ),
        ("[paths]\nbackups_keep = -1\n", r"backups_keep: expected a whole number .*got -1"),
        (
            "[log]\nlevel = 'verbose'\n",
            r"\[log\] level: expected one of debug, info, warning, error, got 'verbose'",
        ),
        (
            "[log]\nformat = 'syslog'\n",
            r"format: expected one of auto, journal, console, json, got 'syslog'",
        ),
        ("[log]\nlevel = {a = 1}\n", r"level: expected one of .*got a table"),
        # not TOML at all
        ("[repair\n", r"^ipamguard.toml: not valid TOML: .*line 1"),
        ("[repair]\nenabled = true\nenabled = false\n", r"not valid TOML"),
    ],
)
def test_bad_input_is_one_line_naming_the_key(text: str, expected: str) -> None:
    message = error_of(text)
    assert message.startswith("ipamguard.toml: ")
    assert re.search(expected, message), message


def test_a_missing_default_file_means_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ipamguard.config.DEFAULT_CONFIG_PATH", "/nonexistent/ipamguard.toml")
    assert load_config() == Config()
    assert DEFAULT_CONFIG_PATH == "/etc/ipamguard/ipamguard.toml"


def test_a_missing_file_given_explicitly_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=f"^{path}: no such file$"):
        load_config(str(path))


def test_unreadable_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"^{tmp_path}: cannot read: Is a directory$"):
        load_config(str(tmp_path))
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"[log]\nlevel = '\xff'\n")
    with pytest.raises(ConfigError, match=r"bin.toml: not UTF-8 text \(byte 15\)"):
        load_config(str(binary))
    if os.geteuid() != 0:  # root reads anything
        secret = tmp_path / "secret.toml"
        secret.write_text("")
        secret.chmod(0)
        with pytest.raises(ConfigError, match="cannot read: Permission denied"):
            load_config(str(secret))


def test_errors_name_the_file_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "ipamguard.toml"
    path.write_text("[watch]\nresync_seconds = -5\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == (
        f"{path}: [watch] resync_seconds: expected seconds, more than 0 and at most 86400, got -5"
    )
    assert isinstance(info.value, IpamguardError)
    assert info.value.exit_code == 2


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.repair.enabled = True  # type: ignore[misc]


def test_config_changes() -> None:
    old = Config()
    new = parse_config("[repair]\nenabled = true\nkinds = ['leaked']\n[log]\nlevel = 'debug'\n")
    assert config_changes(old, new) == [
        "[repair] enabled: false -> true",
        "[repair] kinds: ['leaked', 'stale', 'dangling'] -> ['leaked']",
        "[log] level: 'info' -> 'debug'",
    ]
    assert config_changes(new, new) == []


def test_a_grace_period_below_the_floor_is_a_warning() -> None:
    assert warnings(parse_config("[repair]\nenabled = true\ngrace_seconds = 60\n")) == []
    assert warnings(parse_config("[repair]\ngrace_seconds = 0\n")) == []  # repair off
    (line,) = warnings(parse_config("[repair]\nenabled = true\ngrace_seconds = 0\n"))
    assert line.startswith("[repair] grace_seconds = 0 is below 10 s") and "\n" not in line


def test_the_user_config_lives_in_xdg_config_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/home/u/cfg")
    assert default_config_path(user=True) == "/home/u/cfg/ipamguard/ipamguard.toml"
    assert default_config_path() == DEFAULT_CONFIG_PATH


def test_resolve_fills_in_podmans_own_paths() -> None:
    resolved = resolve_config(Config(), user=False)
    assert resolved.paths.db == "/run/containers/networks/ipam.db"
    assert resolved.podman.url == "unix:///run/podman/podman.sock"
    assert resolved.paths.backup_dir == "/var/lib/ipamguard/backups"
    kept = resolve_config(parse_config("[paths]\ndb = '/srv/ipam.db'\n"), user=False)
    assert kept.paths.db == "/srv/ipam.db"


def test_metrics_and_alerts_can_be_set() -> None:
    assert Config().metrics == MetricsConfig(None)  # no metrics unless asked for
    assert Config().alerts == AlertsConfig(10.0)
    config = parse_config(
        '[metrics]\ntextfile = "/var/lib/prometheus/node-exporter//ipamguard.prom"\n'
        "[alerts]\nsubnet_free_percent = 2.5\n"
    )
    assert config.metrics == MetricsConfig("/var/lib/prometheus/node-exporter/ipamguard.prom")
    assert config.alerts == AlertsConfig(2.5)
    assert parse_config("[alerts]\nsubnet_free_percent = 0\n").alerts.subnet_free_percent == 0
    assert config_changes(Config(), config) == [
        "[metrics] textfile: (off) -> '/var/lib/prometheus/node-exporter/ipamguard.prom'",
        "[alerts] subnet_free_percent: 10.0 -> 2.5",
    ]


PROM = "expected an absolute path ending in .prom (node_exporter reads only *.prom files)"
PERCENT = "expected a percentage between 0 and 100 (0: never)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[metrics]\ntextfile = "ipamguard.prom"\n', f"[metrics] textfile: {PROM}, got "
         "'ipamguard.prom'"),
        ('[metrics]\ntextfile = "/var/lib/x/ipamguard.txt"\n', f"textfile: {PROM}, got "),
        ('[metrics]\ntextfile = "/var/lib/x/.prom"\n', f"textfile: {PROM}, got "),
        ("[metrics]\ntextfile = 1\n", f"textfile: {PROM}, got 1"),
        ("[metrics]\ntextfile = true\n", f"textfile: {PROM}, got true"),
        ("[metrics]\nport = 9100\n", "[metrics] unknown key 'port' (known: textfile)"),
        ("[alerts]\nsubnet_free_percent = 101\n", f"subnet_free_percent: {PERCENT}, got 101"),
        ("[alerts]\nsubnet_free_percent = -1\n", f"subnet_free_percent: {PERCENT}, got -1"),
        ("[alerts]\nsubnet_free_percent = '10'\n", f"{PERCENT}, got '10'"),
        ("[alerts]\nsubnet_free_percent = true\n", f"{PERCENT}, got true"),
        ("[alerts]\nfree = 10\n", "[alerts] unknown key 'free' (known: subnet_free_percent)"),
    ],
)  # fmt: skip
def test_bad_metrics_and_alerts_values_are_one_line(text: str, expected: str) -> None:
    message = error_of(text)
    assert message.startswith("ipamguard.toml: [")
    assert expected in message
