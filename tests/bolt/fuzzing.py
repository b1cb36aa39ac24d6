"""Byte-flip fuzzing of the engine against Go's bbolt (bench/fuzz_bolt.py, test_fuzz.py).

A case: one Go-written base, one mutation (see fuzz_targets.py), then

1. the engine reads it: ``InvalidDatabase`` with a one-line message, or a content; no other
   exception may escape, and reading never changes the file;
2. Go checks it (the oracle's structural walk + ``tx.Check``): if Go accepts and the engine
   read it, both read the same content; if Go rejects what the engine read, that is a
   finding (accepted-but-Go-rejects), kept with its mutation and classified;
3. a write chosen from the content read (a release: an IP key and its ids entry; an
   allocation; a put, up to overflow size; a run of deletes that makes pages merge) is
   either refused with ``InvalidDatabase`` and the file byte for byte unchanged, or
   committed, and then Go's check passes and Go's dump is the content read plus the write.

Anything else is a failure, reported with the seed and case number that reproduce it
(every case has its own random generator: ``Random(f"{seed}:{index}")``).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import random
import re
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fuzz_targets import GROUPS, Base, build_bases, mutate
from ops import Model, ModelBucket, Op, apply_op, create_bucket, delete, put
from oracle_tool import Oracle, OracleServer

REFUSED = "refused"
WRITTEN = "accepted+written-ok"
WRITE_REFUSED = "accepted, write refused"
GO_REJECTS = "accepted-but-Go-rejects"
FAILED = "FAILURE"
OUTCOMES = (REFUSED, WRITTEN, WRITE_REFUSED, GO_REJECTS, FAILED)
OS_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------- writes


def _buckets(model: Model) -> list[tuple[tuple[bytes, ...], ModelBucket]]:
    return list(model.root.walk())


def release_ops(model: Model, rng: random.Random) -> list[Op]:
    """podman's deallocIPs of one container: its IP key in each subnet, its ids entry."""
    owners = [
        (net, cid)
        for net, nb in sorted(model.root.buckets.items())
        if b"ids" in nb.buckets
        for cid in sorted(nb.buckets[b"ids"].keys)
    ]
    if not owners:
        return []
    net, cid = rng.choice(owners)
    nb = model.root.buckets[net]
    ops: list[Op] = []
    try:
        ips = json.loads(nb.buckets[b"ids"].keys[cid])
    except ValueError:
        ips = []
    for ip in ips if isinstance(ips, list) else []:
        try:
            packed = ipaddress.ip_address(ip).packed
        except (TypeError, ValueError):
            continue
        for name, sb in sorted(nb.buckets.items()):
            if name != b"ids" and packed in sb.keys:
                ops.append(delete([net, name], packed))
                break
    return [*ops, delete([net, b"ids"], cid)]


def allocate_ops(model: Model, rng: random.Random) -> list[Op]:
    """netavark's allocIPs of a new container in one subnet: IP key, lastIP, ids entry."""
    choices = []
    for net, nb in sorted(model.root.buckets.items()):
        for name, sb in sorted(nb.buckets.items()):
            try:
                network = ipaddress.ip_network(name.decode())
            except ValueError:
                continue
            if b"ids" in nb.buckets and network.num_addresses >= 4:
                choices.append((net, name, sb, network))
    if not choices:
        return []
    net, name, sb, network = rng.choice(choices)
    ip = network.network_address + rng.randrange(2, min(network.num_addresses - 1, 1 << 20))
    cid = rng.randbytes(32).hex().encode()
    if ip.packed in sb.buckets or b"lastIP" in sb.buckets:
        return []
    ids = model.root.buckets[net].buckets[b"ids"]
    if cid in ids.buckets:
        return []
    return [
        put([net, name], ip.packed, cid),
        put([net, name], b"lastIP", ip.packed),
        put([net, b"ids"], cid, json.dumps([str(ip)], separators=(",", ":")).encode()),
    ]


def put_ops(model: Model, rng: random.Random, page_size: int) -> list[Op]:
    buckets = _buckets(model)
    if not buckets:
        return [create_bucket([], b"fuzz"), put([b"fuzz"], b"k", b"v")]
    path, bucket = rng.choice(buckets)
    if bucket.keys and rng.random() < 0.4:
        key = rng.choice(sorted(bucket.keys))
    else:
        key = rng.randbytes(rng.choice([1, 4, 16, 64, 200]))
    if key in bucket.buckets:
        return []
    size = rng.choice([0, 8, 64, 400, 2 * page_size + 100])
    return [put(list(path), key, rng.randbytes(size))]


def delete_run_ops(model: Model, rng: random.Random) -> list[Op]:
    """A run of neighbouring keys: leaves empty out and merge, branches shrink."""
    full = [(p, b) for p, b in _buckets(model) if len(b.keys) >= 8]
    if not full:
        return []
    path, bucket = rng.choice(full)
    keys = sorted(bucket.keys)
    n = rng.randint(len(keys) // 4, 3 * len(keys) // 4)
    start = rng.randrange(len(keys) - n + 1)
    return [delete(list(path), k) for k in keys[start : start + n]]


def choose_write(model: Model, rng: random.Random, base: Base) -> list[Op]:
    """ipam.db: release 50%, allocate 20%, put 15%, delete a run 15%; else put or delete run."""
    for _ in range(4):
        roll = rng.random()
        if base.ipam and roll < 0.5:
            ops = release_ops(model, rng)
        elif base.ipam and roll < 0.7:
            ops = allocate_ops(model, rng)
        elif roll < (0.85 if base.ipam else 0.55):
            ops = put_ops(model, rng, base.page_size)
        else:
            ops = delete_run_ops(model, rng)
        if ops:
            return ops
    return put_ops(model, rng, base.page_size) or [create_bucket([], b"fuzz-" + rng.randbytes(4))]


# --------------------------------------------------------------- the engine


def engine_dump(path: Path) -> dict[str, Any]:
    """Go's ``dump`` format, made by the engine (plain keys of the root bucket under "keys")."""
    from ipamguard import bolt

    def walk(bucket: Any) -> dict[str, Any]:
        keys: dict[str, str] = {}
        buckets: dict[str, Any] = {}
        for key, value in bucket.items():
            if value is None:
                child = bucket.bucket(key)
                if child is None:
                    raise AssertionError(f"items() gave None for {key.hex()}, yet no bucket")
                buckets[key.hex()] = walk(child)
            else:
                keys[key.hex()] = bytes(value).hex()
        return {"seq": bucket.sequence, "keys": keys, "buckets": buckets}

    with bolt.DB.open(path, readonly=True, timeout=5.0) as db, db.view() as tx:
        top = walk(tx.root)
    out: dict[str, Any] = {"buckets": top["buckets"]}
    if top["keys"]:
        out["keys"] = top["keys"]
    return out


def engine_write(path: Path, ops: list[Op]) -> None:
    from ipamguard import bolt

    with bolt.DB.open(path, readonly=False, timeout=5.0) as db, db.update() as tx:
        for op in ops:
            apply_op(tx, op)


def expected_after(content: dict[str, Any], ops: list[Op]) -> dict[str, Any]:
    model = Model.from_dump(content)
    for op in ops:
        model.apply(op)
    out = model.dump()
    if "keys" in content:
        out["keys"] = content["keys"]
    return out


# --------------------------------------------------------------- a case


@dataclass
class Result:
    outcome: str
    group: str
    what: list[str]
    detail: str = ""  # the refusal, Go's first error, or what failed
    base: str = ""
    go_rejects: bool = False  # Go's check of the mutated file
    ops: str = ""
    page_size: int = 0  # the base's

    def known_harmless(self) -> str | None:
        """Why an accepted-but-Go-rejects case is harmless, if it is of a known kind."""
        go, _, after = self.detail.partition(" | ")
        if (
            go.startswith("no valid meta page: meta 0: ")
            and self.page_size != OS_PAGE_SIZE
            and after == "written file passes Go"
        ):
            return (
                "meta page 0 does not validate, in a file whose page size is not the OS's: "
                "bbolt looks for meta page 1 at the OS page size and gives up; the engine "
                "finds it and reads its state (as bbolt does when the page sizes agree), and "
                "its write rewrites meta page 0"
            )
        return None


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refusal(error: Exception) -> str | None:
    """The message if ``error`` is a proper refusal (InvalidDatabase, one line), else None."""
    from ipamguard.errors import InvalidDatabase

    message = str(error)
    if isinstance(error, InvalidDatabase) and message.strip() and "\n" not in message:
        return message
    return None


def _failure(stage: str, error: BaseException) -> str:
    tb = traceback.extract_tb(error.__traceback__)
    where = f"{tb[-1].filename.rsplit('/', 2)[-1]}:{tb[-1].lineno}" if tb else "?"
    return f"{stage}: {type(error).__name__} at {where}: {str(error)[:300]!r}"


_BASE_SNAPSHOTS: dict[str, Any] = {}


def incremental_mismatch(base: Base, data: bytes, accepted: bool) -> str:
    """ "" if validating ``data`` after the valid base (reusing the base's results for
    the pages that did not change, as the daemon does) agrees with a full validation."""
    from ipamguard.bolt.check import load_snapshot
    from ipamguard.errors import InvalidDatabase

    previous = _BASE_SNAPSHOTS.get(base.name)
    if previous is None:
        previous = _BASE_SNAPSHOTS[base.name] = load_snapshot(base.data)
    try:
        load_snapshot(data, previous)
    except InvalidDatabase as error:
        return (
            f"incremental validation refuses what a full one accepts: {error}" if accepted else ""
        )
    except Exception as error:  # any other exception is the finding
        return _failure("incremental validation", error)
    return "" if accepted else "incremental validation accepts what a full one refuses"


def run_case(
    bases: list[Base], server: OracleServer, seed: int, index: int, path: Path
) -> tuple[Result, bytes]:
    """Case ``index`` of run ``seed`` (its own RNG: one case reproduces alone)."""
    rng = random.Random(f"{seed}:{index}")
    base = rng.choice(bases)
    mutation = mutate(base, rng)
    result = Result(FAILED, mutation.group, mutation.what, base=base.name)
    result.page_size = base.page_size
    path.write_bytes(mutation.data)
    digest = hashlib.sha256(mutation.data).hexdigest()

    try:
        content: dict[str, Any] | None = engine_dump(path)
        refusal = ""
    except Exception as error:
        message = _refusal(error)
        if message is None:
            result.detail = _failure("read", error)
            return result, mutation.data
        content, refusal = None, message
    if _sha(path) != digest:
        result.detail = "reading changed the file"
        return result, mutation.data

    mismatch = incremental_mismatch(base, mutation.data, content is not None)
    if mismatch:
        result.detail = mismatch
        return result, mutation.data

    go = server.ask("checkdump", path)
    result.go_rejects = bool(go.get("fail") or go.get("errors"))
    if content is not None and not result.go_rejects and go["dump"] != content:
        result.detail = "the engine reads other content than Go: " + _first_diff(
            content, go["dump"]
        )
        return result, mutation.data

    ops = choose_write(Model.from_dump(content), rng, base) if content else _blind_write(rng)
    result.ops = _describe(ops)
    try:
        engine_write(path, ops)
        written = True
    except Exception as error:
        message = _refusal(error)
        if message is None:
            result.detail = _failure("write", error)
            return result, mutation.data
        written = False
        refusal = refusal or message
    if not written:
        if _sha(path) != digest:
            result.detail = f"a refused write changed the file ({refusal})"
            return result, mutation.data
        if content is None:
            result.outcome, result.detail = REFUSED, refusal
        elif result.go_rejects:
            result.outcome, result.detail = GO_REJECTS, _go_error(go) + " | write refused"
        else:
            result.outcome, result.detail = WRITE_REFUSED, refusal
        return result, mutation.data
    if content is None:
        result.detail = f"wrote on a file it refused to read ({refusal})"
        return result, mutation.data

    after = server.ask("checkdump", path)
    if after.get("fail") or after.get("errors"):
        result.detail = "Go rejects the file the engine wrote: " + _go_error(after)
        if result.go_rejects:
            result.detail += " (Go rejected it before the write too: " + _go_error(go) + ")"
        return result, mutation.data
    expected = expected_after(content, ops)
    if after["dump"] != expected:
        result.detail = "wrong content after the write: " + _first_diff(after["dump"], expected)
        return result, mutation.data
    if result.go_rejects:
        result.outcome, result.detail = GO_REJECTS, _go_error(go) + " | written file passes Go"
    else:
        result.outcome = WRITTEN
    return result, mutation.data


def _blind_write(rng: random.Random) -> list[Op]:
    """A write on a file the engine refused to read (it must be refused too)."""
    return [create_bucket([], b"fuzz-" + rng.randbytes(4).hex().encode())]


def _describe(ops: list[Op]) -> str:
    kinds = Counter(op["op"] for op in ops)
    return ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))


def _go_error(answer: dict[str, Any]) -> str:
    if answer.get("fail"):
        return "oracle: " + str(answer["fail"])[:200]
    errors = answer.get("errors") or ["?"]
    return f"{errors[0][:200]}" + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "")


def _first_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    from ops import dump_diff

    return "; ".join(dump_diff(a, b, limit=3)) or "differ (root keys?)"


# --------------------------------------------------------------- a run


@dataclass
class Summary:
    seed: int
    cases: int = 0
    seconds: float = 0.0
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (group, outcome)
    refused_go_accepts: Counter[str] = field(default_factory=Counter)  # by group
    stricter: list[tuple[int, Result]] = field(default_factory=list)  # refused, Go accepts
    findings: list[tuple[int, Result]] = field(default_factory=list)  # accepted-but-Go-rejects
    failures: list[tuple[int, Result]] = field(default_factory=list)

    def add(self, index: int, result: Result) -> None:
        self.cases += 1
        self.counts[result.group, result.outcome] += 1
        if result.outcome == REFUSED and not result.go_rejects:
            self.refused_go_accepts[result.group] += 1
            self.stricter.append((index, result))
        if result.outcome == GO_REJECTS:
            self.findings.append((index, result))
        if result.outcome == FAILED:
            self.failures.append((index, result))

    def table(self) -> str:
        groups = [g for g in GROUPS if any(self.counts[g, o] for o in OUTCOMES)]
        head = ["page type", *OUTCOMES, "refused, Go accepts"]
        rows = [
            [g, *(str(self.counts[g, o]) for o in OUTCOMES), str(self.refused_go_accepts[g])]
            for g in groups
        ]
        total = [sum(self.counts[g, o] for g in groups) for o in OUTCOMES]
        rows.append(["total", *map(str, total), str(sum(self.refused_go_accepts.values()))])
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in [head]]
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        rate = self.cases / self.seconds if self.seconds else 0.0
        lines.append(
            f"seed {self.seed}: {self.cases} cases in {self.seconds:.1f} s ({rate:.0f} cases/s)"
        )
        return "\n".join(lines)

    def unexplained(self) -> list[tuple[int, Result]]:
        """The accepted-but-Go-rejects cases of no known harmless kind."""
        return [(i, r) for i, r in self.findings if r.known_harmless() is None]

    def finding_classes(self) -> Counter[str]:
        """accepted-but-Go-rejects by kind: the known ones by their explanation, others by
        (mutated regions, Go's error with the numbers taken out)."""
        classes: Counter[str] = Counter()
        for _, r in self.findings:
            known = r.known_harmless()
            if known is not None:
                classes["harmless: " + known] += 1
                continue
            region = ";".join(sorted({w.split("@")[0].split(":")[0] for w in r.what}))
            go = re.sub(r"[0-9a-f]{6,}|\d+", "N", r.detail)
            classes[f"UNEXPLAINED: {region} -> {go}"] += 1
        return classes


def fuzz(
    oracle: Oracle,
    workdir: Path,
    seed: int,
    cases: int,
    first: int = 0,
    bases: list[Base] | None = None,
    save: Path | None = None,
    progress: Callable[[Summary], None] | None = None,
) -> Summary:
    """Run cases ``first`` .. ``first + cases - 1`` of ``seed``; failures saved under ``save``."""
    bases = bases if bases is not None else build_bases(oracle, workdir)
    summary = Summary(seed)
    path = workdir / "case.db"
    started = time.perf_counter()
    with OracleServer(oracle.binary) as server:
        for index in range(first, first + cases):
            result, data = run_case(bases, server, seed, index, path)
            summary.add(index, result)
            if result.outcome == FAILED and save is not None:
                save.mkdir(parents=True, exist_ok=True)
                (save / f"seed{seed}-case{index}.db").write_bytes(data)
            if progress is not None and summary.cases % 500 == 0:
                summary.seconds = time.perf_counter() - started
                progress(summary)
    summary.seconds = time.perf_counter() - started
    return summary


def describe(index: int, result: Result) -> str:
    return (
        f"case {index} [{result.base}, {result.group}] {' + '.join(result.what)}; "
        f"write: {result.ops or '-'}\n    {result.detail}"
    )


@contextlib.contextmanager
def tmp_dir() -> Iterator[Path]:
    """A fast scratch directory (tmpfs when there is one)."""
    import tempfile

    root = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="ipamguard-fuzz-", dir=root) as name:
        yield Path(name)
