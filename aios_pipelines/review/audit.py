"""The hash chain of the audit log.

Each entry's hash covers its own fields and the previous entry's hash:

    entry_hash = sha256(prev_hash + canonical_json([seq, at, actor, action, entity, entity_id, payload]))

``at`` is the ISO 8601 form of the UTC timestamp; canonical JSON sorts keys and has no
spaces. The first entry's ``prev_hash`` is 64 zeros. Editing, deleting or reordering any
entry breaks the chain from that entry on; :func:`verify_entries` names the first bad one.
Cutting entries off the end leaves a shorter valid chain: compare against a head
(seq, hash) saved elsewhere to detect that.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Iterable, Mapping

GENESIS_HASH = "0" * 64


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot put {type(value).__name__} {value!r} in the audit log")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default, allow_nan=False)


def normalise_payload(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """The payload exactly as it reads back from a JSON column (dates become strings)."""
    return json.loads(canonical_json(dict(payload or {})))


def entry_hash(prev_hash: str, seq: int, at: datetime, actor: str, action: str, entity: str,
               entity_id: str, payload: Mapping[str, Any]) -> str:
    body = canonical_json([seq, _default(at), actor, action, entity, entity_id, payload])
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def _recomputed_hash(prev_hash: str, row: Mapping[str, Any]) -> str | None:
    """The hash ``row`` should carry after ``prev_hash``. ``payload`` may be the JSON text the
    store holds: the store writes JSON columns in canonical form (``ReviewStore``'s serializer),
    so the stored text is hashed as it is, and decoded only when that does not match (text
    written another way: by an older store, by hand, by PostgreSQL's ``jsonb``). None when the
    text is not JSON at all. The fast match cannot hide an edit: the hashed bytes are then the
    original canonical body, and the fields before the payload are self-delimiting JSON, so no
    bytes can move between them and the stored text."""
    payload = row["payload"]
    # '": ' is the key separator of spaced text (an older store's): decode it straight away
    if isinstance(payload, str) and '": ' not in payload:
        head = canonical_json([int(row["seq"]), _default(row["at"]), row["actor"], row["action"], row["entity"],
                               row["entity_id"]])
        digest = hashlib.sha256(f"{prev_hash}{head[:-1]},{payload}]".encode("utf-8")).hexdigest()
        if digest == row["entry_hash"]:
            return digest
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return None
    return entry_hash(prev_hash, int(row["seq"]), row["at"], row["actor"], row["action"], row["entity"],
                      row["entity_id"], payload)


def verify_entries(entries: Iterable[Mapping[str, Any]], start: tuple[int, str] | None = None) -> tuple[bool, int | None]:
    """Check entries read in ``seq`` order: numbering without gaps, links and hashes.
    ``payload`` is the decoded object or the JSON text as stored.

    From the first entry by default; with ``start`` = (seq, entry_hash) of an entry verified
    earlier, ``entries`` are those after it and the first must link to that hash.
    Returns ``(True, None)`` or ``(False, seq of the first bad entry)``; for a gap left by a
    deleted entry that is the seq of the entry after the gap.
    """
    ok, bad, _ = verify_entries_to_head(entries, start)
    return ok, bad


def verify_entries_to_head(
    entries: Iterable[Mapping[str, Any]], start: tuple[int, str] | None = None
) -> tuple[bool, int | None, tuple[int, str]]:
    """:func:`verify_entries`, and the (seq, entry_hash) of the last entry checked (``start``,
    or (0, GENESIS_HASH), when there were none)."""
    last_seq, prev = start if start is not None else (0, GENESIS_HASH)
    expected_seq = last_seq + 1
    for row in entries:
        seq = int(row["seq"])
        recomputed = _recomputed_hash(prev, row)
        if seq != expected_seq or row["prev_hash"] != prev or row["entry_hash"] != recomputed:
            return False, seq, (expected_seq - 1, prev)
        prev = row["entry_hash"]
        expected_seq += 1
    return True, None, (expected_seq - 1, prev)


@dataclass(frozen=True)
class SegmentCheck:
    """One stretch of the chain checked on its own, trusting its first entry's stored
    ``prev_hash``; :func:`join_segments` then checks that claim against the stretch before."""

    first: tuple[int, str] | None  # (seq, stored prev_hash) of its first entry; None when empty
    ok: bool
    bad: int | None
    end: tuple[int, str] | None  # (seq, entry_hash) of its last good entry


def verify_segment(entries: Iterable[Mapping[str, Any]]) -> SegmentCheck:
    """Check ``entries`` (in ``seq`` order) as :func:`verify_entries_to_head` would from the
    entry before the first, whose hash is taken from the first entry's ``prev_hash``."""
    rows = iter(entries)
    first_row = next(rows, None)
    if first_row is None:
        return SegmentCheck(first=None, ok=True, bad=None, end=None)
    first = (int(first_row["seq"]), str(first_row["prev_hash"]))
    ok, bad, end = verify_entries_to_head(itertools.chain([first_row], rows), (first[0] - 1, first[1]))
    return SegmentCheck(first=first, ok=ok, bad=bad, end=end)


def join_segments(
    start: tuple[int, str], checks: Iterable[SegmentCheck]
) -> tuple[bool, int | None, tuple[int, str]]:
    """The result of :func:`verify_entries_to_head` over the segments' entries in order,
    from ``start``: each segment must begin with the entry after the previous one's last and
    link to its hash, and the first segment that fails decides."""
    prev = start
    for check in checks:
        if check.first is None:
            continue
        if check.first != (prev[0] + 1, prev[1]):
            return False, check.first[0], prev
        if not check.ok:
            return False, check.bad, check.end
        prev = check.end
    return True, None, prev
