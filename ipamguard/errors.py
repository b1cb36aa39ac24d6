"""The one error tree of ipamguard.

Every error a user can cause or meet (bad file, bad arguments, a lock held by
someone else, podman down) is an ``IpamguardError``: the CLI prints its message
on one line and exits with ``exit_code``. Anything else is a bug and shows a
traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_NOTHING = 1  # nothing to do, not found, findings present
EXIT_ERROR = 2  # could not do the work: bad input, lock timeout, podman down


class IpamguardError(Exception):
    """Base of every error that ipamguard reports to the user."""

    exit_code = EXIT_ERROR


class UsageError(IpamguardError):
    """The command line or an answer to a prompt is not acceptable."""


class ConfigError(IpamguardError):
    """The configuration file is unreadable or has bad keys or values."""


class NotFound(IpamguardError):
    """What the user named (container, IP, network) is not in the database."""

    exit_code = EXIT_NOTHING


class Refused(IpamguardError):
    """ipamguard refuses to do something unsafe (e.g. release a live container)."""


class LockTimeout(IpamguardError):
    """A lock (podman's network lock or the bbolt file lock) stayed held too long."""


class LockUnusable(IpamguardError):
    """podman's network lock cannot be taken (a directory, not ours, unwritable)."""


class Changed(IpamguardError):
    """ipam.db changed between the look a decision was made on and the write: the
    decision no longer holds (look again)."""


class PodmanUnavailable(IpamguardError):
    """Podman's API could not be asked; nothing is released while blind."""


# --- the bbolt engine -------------------------------------------------------


class BoltError(IpamguardError):
    """Base of the bbolt engine's errors."""


class InvalidDatabase(BoltError):
    """The file is not a valid bbolt database; it is refused and left unchanged."""


class DatabaseNotFound(BoltError):
    """The database file does not exist."""


class DatabaseChanged(BoltError):
    """The file changed under us too often to get a stable, validated snapshot."""


class TxClosed(BoltError):
    """The transaction was already committed or rolled back."""


class TxNotWritable(BoltError):
    """A write was attempted in a read-only transaction."""


class BucketNotFound(BoltError):
    """The named bucket does not exist."""


class BucketExists(BoltError):
    """A bucket with that name already exists."""


class IncompatibleValue(BoltError):
    """A key names a bucket where a value was expected, or the other way round."""


class KeyRequired(BoltError):
    """A zero-length key was given."""


class KeyTooLarge(BoltError):
    """The key is longer than bbolt's maximum (32768 bytes)."""


class ValueTooLarge(BoltError):
    """The value is longer than bbolt's maximum ((1 << 31) - 2 bytes)."""


# --- doctor: systemd-networkd and container links ------------------------------


class DoctorError(IpamguardError):
    """Base of the errors of ``ipamguard doctor``."""


class DBusUnavailable(DoctorError):
    """The D-Bus system bus could not be reached (no socket, refused, auth failed)."""


class NetworkdNotRunning(DoctorError):
    """systemd-networkd does not own its name on the system bus."""


class NetworkdError(DoctorError):
    """systemd-networkd answered a D-Bus call with an error (e.g. access denied)."""


class LinkReadError(DoctorError):
    """The network links could not be read from /sys/class/net."""


class FixError(DoctorError):
    """The drop-in ``.network`` file could not be written or replaced."""


# --- liveness: which containers exist, and which run -------------------------


class SourceUnavailable(IpamguardError):
    """A liveness source (podman's API, runtime state, /proc) could not answer."""


class SourceUncertain(IpamguardError):
    """A liveness source answered, with a doubt that only a sign of life from the
    network can lift (e.g. a podman process whose storage cannot be read)."""
