"""Which ``.network`` file systemd-networkd applies to a link, and why.

networkd (v252) reads ``*.network`` from its search path, highest priority
first: /etc/systemd/network, /run/systemd/network, /usr/local/lib/systemd/network,
/usr/lib/systemd/network (and /lib/systemd/network on split-/usr systems). A file
hides every same-named file in a lower-priority directory; a file that is empty
or a symlink to /dev/null masks that name. The survivors are sorted by file name
(byte order), whatever their directory, and the *first* file whose [Match]
section matches a link wins. A file whose [Match] has no conditions at all is
ignored by networkd (it logs "To match all interfaces, add Name=*").
Drop-ins ``NAME.network.d/*.conf`` (from all directories, sorted by name) are
read after the file and may add [Match] conditions.

Conditions we can judge from sysfs (Name=, Type=, Kind=, Driver=, MACAddress=)
give a yes or no; any other key (Host=, Virtualization=, Property=, ...) makes
the verdict "maybe": we report the file as one that *may* match.
"""

from __future__ import annotations

import enum
import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ipamguard.doctor.links import Link

NETWORK_DIRS = (
    Path("/etc/systemd/network"),
    Path("/run/systemd/network"),
    Path("/usr/local/lib/systemd/network"),
    Path("/usr/lib/systemd/network"),
    Path("/lib/systemd/network"),
)

# [Match] keys whose value is a list of globs, "!" inverting a single glob.
_GLOB_KEYS = ("Name", "Type", "Kind", "Driver")
_TRUE = frozenset({"1", "yes", "y", "true", "t", "on"})


class Verdict(enum.Enum):
    """Whether a [Match] section matches a link."""

    NO = "no"
    MAYBE = "maybe"
    YES = "yes"


@dataclass
class NetworkFile:
    """The parts of one ``.network`` file (with its drop-ins) that matter here."""

    path: Path
    match: dict[str, list[str]] = field(default_factory=dict)  # key -> accumulated values
    unmanaged: bool = False  # [Link] Unmanaged=yes

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class MatchResult:
    """The file networkd applies to a link, and files before it we cannot rule out."""

    file: NetworkFile | None
    maybe: tuple[tuple[NetworkFile, tuple[str, ...]], ...] = ()  # (file, keys we can't judge)


# --- parsing ------------------------------------------------------------------


def parse_unit(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) triples of a systemd-style INI text, in file order."""
    entries = []
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if sep and section:
            entries.append((section, key.strip(), value.strip()))
    return entries


def apply_unit_text(network: NetworkFile, text: str) -> None:
    """Add a file's (or drop-in's) [Match] and [Link] Unmanaged= settings."""
    for section, key, value in parse_unit(text):
        if section == "Match":
            words = [word.strip("\"'") for word in value.split()]
            if not words:
                network.match.pop(key, None)  # an empty assignment resets the list
            else:
                network.match.setdefault(key, []).extend(words)
        elif section == "Link" and key == "Unmanaged":
            network.unmanaged = value.lower() in _TRUE


def parse_network_file(path: Path, text: str, dropins: Iterable[str] = ()) -> NetworkFile:
    network = NetworkFile(path)
    for part in (text, *dropins):
        apply_unit_text(network, part)
    return network


# --- evaluating [Match] -------------------------------------------------------


def _glob_list_matches(patterns: Sequence[str], value: str) -> bool:
    """networkd's net_condition_test_strv: "!glob" excludes, plain globs include."""
    has_positive = False
    matched = False
    for pattern in patterns:
        inverted = pattern.startswith("!")
        glob = pattern[1:] if inverted else pattern
        has_positive = has_positive or not inverted
        if fnmatch.fnmatchcase(value, glob):
            if inverted:
                return False
            matched = True
    return matched if has_positive else True


def _normalise_mac(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch in "0123456789abcdef")


def _known_value(key: str, link: Link) -> str | None:
    """The link's value for a glob key, or None if sysfs does not tell us."""
    if key == "Name":
        return link.name
    if key == "Type":
        return link.link_type
    if key == "Kind":
        return link.kind if link.kind in ("bridge", "veth") else None
    if key == "Driver":
        return link.driver
    return None


def evaluate(network: NetworkFile, link: Link) -> tuple[Verdict, tuple[str, ...]]:
    """Does this file's [Match] match the link? Also the keys we could not judge."""
    if not network.match:
        return Verdict.NO, ()  # networkd ignores a file without [Match] conditions
    unknown = []
    for key, values in network.match.items():
        if key in _GLOB_KEYS:
            value = _known_value(key, link)
            if value is None:
                unknown.append(key)
            elif not _glob_list_matches(values, value):
                return Verdict.NO, ()
        elif key == "MACAddress" and link.mac:
            if _normalise_mac(link.mac) not in {_normalise_mac(v) for v in values}:
                return Verdict.NO, ()
        else:
            unknown.append(key)
    if unknown:
        return Verdict.MAYBE, tuple(unknown)
    return Verdict.YES, ()


def first_match(files: Sequence[NetworkFile], link: Link) -> MatchResult:
    """The file networkd would apply to ``link`` (files must be in networkd's order)."""
    maybe: list[tuple[NetworkFile, tuple[str, ...]]] = []
    for network in files:
        verdict, unknown = evaluate(network, link)
        if verdict is Verdict.YES:
            return MatchResult(network, tuple(maybe))
        if verdict is Verdict.MAYBE:
            maybe.append((network, unknown))
    return MatchResult(None, tuple(maybe))


# --- the search path ----------------------------------------------------------


def order_config_files(listings: Sequence[tuple[Path, Sequence[str]]]) -> list[Path]:
    """systemd's conf_files_list: the first directory wins a name, then sort by name.

    ``listings`` holds (directory, file names) in priority order. Masking is
    left to the caller (a masked file still claims its name).
    """
    chosen: dict[str, Path] = {}
    for directory, names in listings:
        for name in names:
            chosen.setdefault(name, directory / name)
    return [chosen[name] for name in sorted(chosen, key=os.fsencode)]


def _unique_dirs(dirs: Iterable[Path]) -> list[Path]:
    """Drop directories that are the same place (Debian: /lib -> /usr/lib)."""
    seen = set()
    unique = []
    for directory in dirs:
        real = os.path.realpath(directory)
        if real not in seen:
            seen.add(real)
            unique.append(directory)
    return unique


def _names(directory: Path, suffix: str) -> list[str]:
    try:
        return [name for name in os.listdir(directory) if name.endswith(suffix)]
    except OSError:
        return []


def _is_masked(path: Path) -> bool:
    try:
        return os.path.realpath(path) == "/dev/null" or path.stat().st_size == 0
    except OSError:
        return True


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def scan_network_files(dirs: Sequence[Path] = NETWORK_DIRS) -> list[NetworkFile]:
    """Every ``.network`` file networkd loads, parsed, in networkd's order."""
    dirs = _unique_dirs(dirs)
    paths = order_config_files([(d, _names(d, ".network")) for d in dirs])
    files = []
    for path in paths:
        if _is_masked(path):
            continue
        dropin_dirs = [d / f"{path.name}.d" for d in dirs]
        dropins = order_config_files([(d, _names(d, ".conf")) for d in dropin_dirs])
        texts = [_read(p) for p in dropins if not _is_masked(p)]
        files.append(parse_network_file(path, _read(path), texts))
    return files
