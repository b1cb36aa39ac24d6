"""Reading CNI's host-local files: stamps (the fence) and the state they hold.

Layout (containernetworking/plugins plugins/ipam/host-local/backend/disk): one
directory per network in the data dir (``/var/lib/cni/networks/NETWORK``), in it

- ``IP`` (the address as Go prints it): ``ID\\r\\nIFNAME``, or the ID alone in files
  of older plugins; host-local matches ``strings.TrimSpace(content)``;
- ``last_reserved_ip.N``: the last address handed out from range set N (never an
  allocation);
- ``lock``: the plugin takes ``flock(LOCK_EX)`` on it around every change.

Every file is stamped (inode, generation, size, times, mode, content): equal stamps
mean the very files that were judged; a file removed and created again, even with
the same content, gets a new inode or generation and new times. A directory is read
under a shared flock of its ``lock`` (host-local holds the exclusive one while it
writes), so no half-written file is ever seen.
"""

from __future__ import annotations

import array
import errno
import fcntl
import hashlib
import ipaddress
import os
import stat
from dataclasses import dataclass

from ipamguard.errors import IpamguardError
from ipamguard.ipam.model import Allocation, IpamState, Malformed, Network, Subnet, printable
from ipamguard.locks import flock, funlock
from ipamguard.stores.cni_config import CniConfigs, CniNetwork

LOCK_NAME = "lock"
LAST_RESERVED = "last_reserved_ip."
MAX_FILE = 4096  # bytes: an address file holds an ID and an interface name
UNKNOWN_SUBNETS = {4: "0.0.0.0/0", 6: "::/0"}  # a network whose config is gone
FS_IOC_GETVERSION = 0x80087601  # _IOR('v', 1, long): the inode's generation
_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class StoreUnreadable(IpamguardError):
    """CNI's data directory cannot be read; nothing was judged or written."""


@dataclass(frozen=True, slots=True)
class FileStamp:
    name: str
    inode: int
    generation: int | None  # None where the file system does not tell
    size: int
    mtime_ns: int
    ctime_ns: int
    mode: int
    content: bytes  # at most MAX_FILE + 1 bytes
    problem: str | None = None  # not a regular file, unreadable


@dataclass(frozen=True, slots=True)
class DirStamp:
    network: str
    inode: int
    files: tuple[FileStamp, ...]  # by name; the ``lock`` file is not part of it
    problem: str | None = None  # not a directory


@dataclass(frozen=True)
class CniFence:
    """Every file of the data directory, stamped; compare with ==."""

    root: int | None  # the data directory's inode (None: it does not exist)
    dirs: tuple[DirStamp, ...] = ()

    def dir(self, network: str) -> DirStamp | None:
        return next((d for d in self.dirs if d.network == network), None)

    def __str__(self) -> str:
        digest = hashlib.sha256(repr(self).encode()).hexdigest()[:12]
        files = sum(len(d.files) for d in self.dirs)
        return f"{len(self.dirs)} network dir(s), {files} file(s), stamp {digest}"


def read_files(data_dir: str, timeout: float) -> CniFence:
    """Stamp every network directory of ``data_dir`` (each under its shared flock)."""
    try:
        root = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return CniFence(None)
    except OSError as error:
        raise StoreUnreadable(f"cannot read {data_dir}: {error.strerror}") from None
    try:
        names = sorted(os.listdir(root))
        dirs = [read_dir(root, data_dir, name, timeout) for name in names]
        return CniFence(os.fstat(root).st_ino, tuple(d for d in dirs if d is not None))
    except OSError as error:
        raise StoreUnreadable(f"cannot read {data_dir}: {error.strerror}") from None
    finally:
        os.close(root)


def read_dir(root: int, data_dir: str, name: str, timeout: float) -> DirStamp | None:
    """One network directory, under a shared flock of its ``lock`` (if it has one)."""
    try:
        info = os.stat(name, dir_fd=root, follow_symlinks=False)
    except FileNotFoundError:
        return None  # removed while we looked
    if not stat.S_ISDIR(info.st_mode):
        return DirStamp(name, info.st_ino, (), "not a network directory")
    fd = os.open(name, os.O_DIRECTORY | _NOFOLLOW, dir_fd=root)
    try:
        lock = _open_lock(fd)
        try:
            if lock is not None:
                flock(lock, os.path.join(data_dir, name, LOCK_NAME), False, timeout)
            return stamp_dir(fd, name)
        finally:
            if lock is not None:
                funlock(lock)
                os.close(lock)
    finally:
        os.close(fd)


def _open_lock(dir_fd: int) -> int | None:
    try:
        return os.open(LOCK_NAME, _NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None  # no lock file (or an odd one): read without it, write never


def stamp_dir(fd: int, network: str) -> DirStamp:
    names = sorted(n for n in os.listdir(fd) if n != LOCK_NAME)
    files = (stamp_file(fd, n) for n in names)
    return DirStamp(network, os.fstat(fd).st_ino, tuple(f for f in files if f is not None))


Entry = tuple[str, int, int, int, int, int]  # name, inode, size, mtime_ns, ctime_ns, mode


def dir_entries(fd: int) -> list[Entry]:
    """Every file but ``lock`` by its metadata alone (no file opened): what a write
    compares with ``entries_of`` its snapshot under the exclusive flock, in microseconds
    per file (a change of content changes the times)."""
    found = []
    for name in sorted(n for n in os.listdir(fd) if n != LOCK_NAME):
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        found.append((name, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns,
                      stat.S_IMODE(info.st_mode)))  # fmt: skip
    return found


def entries_of(directory: DirStamp | None) -> list[Entry]:
    files = directory.files if directory is not None else ()
    return [(f.name, f.inode, f.size, f.mtime_ns, f.ctime_ns, f.mode) for f in files]


def stamp_file(dir_fd: int, name: str) -> FileStamp | None:
    try:
        fd = os.open(name, _NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as error:
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        why = "a symlink" if error.errno == errno.ELOOP else f"unreadable: {error.strerror}"
        return _stamp(name, info, None, b"", why)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            return _stamp(name, info, None, b"", what)
        content = b""
        while len(content) <= MAX_FILE:
            chunk = os.read(fd, MAX_FILE + 1 - len(content))
            if not chunk:
                break
            content += chunk
        return _stamp(name, info, _generation(fd), content, None)
    finally:
        os.close(fd)


def _stamp(
    name: str, info: os.stat_result, generation: int | None, content: bytes, problem: str | None
) -> FileStamp:
    return FileStamp(
        name, info.st_ino, generation, info.st_size, info.st_mtime_ns, info.st_ctime_ns,
        stat.S_IMODE(info.st_mode), content, problem,
    )  # fmt: skip


def _generation(fd: int) -> int | None:
    buffer = array.array("B", bytes(8))
    try:
        fcntl.ioctl(fd, FS_IOC_GETVERSION, buffer, True)
    except OSError:
        return None  # e.g. tmpfs: its inode numbers are never reused soon anyway
    return int.from_bytes(buffer[:4], "little")


# --------------------------------------------------------------------------- the state


def parse_address_file(stamp: FileStamp) -> tuple[str, str | None] | str:
    """(container ID, interface name or None) of an address file, or why it is none."""
    if stamp.problem is not None:
        return stamp.problem
    if len(stamp.content) > MAX_FILE:
        return f"larger than {MAX_FILE} bytes"
    try:
        body = stamp.content.decode("ascii").strip()
    except UnicodeDecodeError:
        return "not ASCII text"
    if not body:
        return "holds no container ID"
    parts = body.split("\r\n")
    if len(parts) > 2 or not all(_word(p) for p in parts):
        return "not 'ID\\r\\nIFNAME' nor an ID alone"
    return parts[0], parts[1] if len(parts) == 2 else None


def _word(text: str) -> bool:
    return bool(text) and text.isprintable() and not any(c.isspace() for c in text)


def canonical_address(name: str) -> str | None:
    """``name`` if it is an address as Go prints it, else None."""
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return None
    return name if str(address) == name else None


def parse_state(fence: CniFence, configs: CniConfigs) -> IpamState:
    """The allocations of every network directory, judged against the configs."""
    state = IpamState(txid=0)
    for directory in fence.dirs:
        if directory.problem is not None:
            name = printable(os.fsencode(directory.network))
            state.malformed.append(Malformed(name, None, name, directory.problem))
            continue
        config = configs.networks.get(directory.network)
        network = _parse_network(directory, config, state.malformed)
        held = any(s.allocations for s in network.subnets)
        network.orphaned = configs.complete and config is None and held
        state.networks.append(network)
    return state


def _parse_network(
    directory: DirStamp, config: CniNetwork | None, malformed: list[Malformed]
) -> Network:
    name = directory.network
    network = Network(name, indexed=False)
    subnets = {str(s): Subnet(str(s)) for s in (config.subnets() if config else [])}

    def subnet_of(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Subnet | None:
        if config is None:  # its ranges are not known
            cidr = UNKNOWN_SUBNETS[address.version]
            return subnets.setdefault(cidr, Subnet(cidr))
        found = config.range_for(address)
        return None if found is None else subnets[str(found.subnet)]

    for stamp in directory.files:
        key = printable(os.fsencode(stamp.name))
        if stamp.name.startswith(LAST_RESERVED):
            _last_reserved(stamp, config, subnets, name, malformed)
            continue
        ip = canonical_address(stamp.name)
        if ip is None:
            malformed.append(Malformed(name, None, key, "not an address (nor lock or "
                                       "last_reserved_ip.N)"))  # fmt: skip
            continue
        parsed = parse_address_file(stamp)
        if isinstance(parsed, str):
            malformed.append(Malformed(name, None, ip, parsed))
            continue
        subnet = subnet_of(ipaddress.ip_address(ip))
        if subnet is None:
            why = (config.problem if config and config.problem else None) or (
                "not an address of the network's ranges"
            )
            malformed.append(Malformed(name, None, ip, why))
            continue
        subnet.allocations.append(Allocation(name, subnet.cidr, ip, parsed[0]))
    network.subnets = list(subnets.values())
    return network


def _last_reserved(
    stamp: FileStamp,
    config: CniNetwork | None,
    subnets: dict[str, Subnet],
    network: str,
    malformed: list[Malformed],
) -> None:
    """``last_reserved_ip.N``: noted on its subnet; an unreadable one is reported."""
    suffix = stamp.name[len(LAST_RESERVED) :]
    text = stamp.content.decode("ascii", "replace").strip()
    ip = canonical_address(text) if stamp.problem is None else None
    if not suffix.isdigit() or ip is None:
        why = stamp.problem or "not last_reserved_ip.N holding an address"
        malformed.append(Malformed(network, None, printable(os.fsencode(stamp.name)), why))
        return
    found = config.range_for(ipaddress.ip_address(ip)) if config else None
    if found is not None:
        subnets[str(found.subnet)].last_ip = ip
