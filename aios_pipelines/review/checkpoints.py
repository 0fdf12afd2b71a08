"""Checking the audit chain against checkpoints kept outside the review store.

A hash chain proves that no entry inside it was edited, deleted or reordered, but not that
its tail was cut off or that the whole chain was recomputed after a change. A checkpoint
(the chain's length and head hash, recorded daily in the warehouse and in Dagster's event
log) pins what the chain was: a later chain must still hold each checkpoint's entry, with
the same hash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aios_pipelines.review.store import ReviewStore


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head_hash: str
    recorded_at: str  # when and where it was recorded, for the message
    source: str = "warehouse"


@dataclass
class AuditVerification:
    ok: bool
    entries: int
    head_seq: int
    checkpoints_checked: int
    head_hash: str = "0" * 64
    first_bad_seq: int | None = None
    problems: list[str] = field(default_factory=list)


def verify_audit(store: ReviewStore, checkpoints: Iterable[Checkpoint]) -> AuditVerification:
    head = store.audit_head()  # read first: the verification below covers at least this far
    head_seq = int(head[0]) if head else 0
    chain_ok, first_bad = store.verify_audit_chain()
    problems: list[str] = []
    if not chain_ok:
        problems.append(f"entry {first_bad} does not verify: it, or an entry before it, was edited, deleted or reordered")
    checked = 0
    for checkpoint in sorted(set(checkpoints), key=lambda c: c.seq):
        checked += 1
        if checkpoint.seq == 0:
            continue
        if checkpoint.seq > head_seq:
            problems.append(
                f"the chain ends at entry {head_seq}, but the checkpoint of {checkpoint.recorded_at} "
                f"({checkpoint.source}) recorded {checkpoint.seq} entries: the log was truncated"
            )
            first_bad = first_bad or head_seq + 1
        elif chain_ok and store.audit_entry_hash(checkpoint.seq) != checkpoint.head_hash:
            problems.append(
                f"entry {checkpoint.seq} no longer has the hash the checkpoint of {checkpoint.recorded_at} "
                f"({checkpoint.source}) recorded: the chain was rewritten"
            )
            first_bad = checkpoint.seq if first_bad is None else min(first_bad, checkpoint.seq)
    return AuditVerification(
        ok=not problems,
        entries=head_seq,
        head_seq=head_seq,
        head_hash=head[1] if head else "0" * 64,
        checkpoints_checked=checked,
        first_bad_seq=first_bad,
        problems=problems,
    )


def checkpoint_row(store: ReviewStore, recorded_at: Any, verification: AuditVerification | None = None) -> dict[str, Any]:
    """The row ``audit_checkpoints`` keeps: the head and whether the chain verified up to it.
    Pass the :func:`verify_audit` just made to record its head instead of verifying again."""
    if verification is not None:
        return {
            "recorded_at": recorded_at,
            "head_seq": verification.head_seq,
            "head_hash": verification.head_hash,
            "chain_verified": verification.ok,
            "first_bad_seq": verification.first_bad_seq,
        }
    head = store.audit_head()
    ok, first_bad = store.verify_audit_chain()
    return {
        "recorded_at": recorded_at,
        "head_seq": int(head[0]) if head else 0,
        "head_hash": head[1] if head else "0" * 64,
        "chain_verified": ok,
        "first_bad_seq": first_bad,
    }
