"""A chain verified in stretches and joined at the seams gives exactly the one-pass answer."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from aios_pipelines.review import audit

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)


def chain(n: int) -> list[dict]:
    entries, prev = [], audit.GENESIS_HASH
    for seq in range(1, n + 1):
        row = {"seq": seq, "at": T0 + timedelta(seconds=seq), "actor": "ann", "action": "case.created",
               "entity": "case", "entity_id": f"C{seq}", "payload": {"pd": seq / 100}, "prev_hash": prev}
        row["entry_hash"] = prev = audit.entry_hash(prev, seq, row["at"], "ann", "case.created", "case",
                                                    f"C{seq}", row["payload"])
        entries.append(row)
    return entries


def tampered(entries: list[dict], how: str, at: int) -> list[dict]:
    rows = [dict(e) for e in entries]
    i = at - 1
    if how == "edit":
        rows[i]["payload"] = {"pd": 0.0}
    elif how == "delete":
        del rows[i]
    elif how == "swap":
        rows[i], rows[i + 1] = rows[i + 1], rows[i]
        rows[i]["seq"], rows[i + 1]["seq"] = rows[i + 1]["seq"], rows[i]["seq"]
    elif how == "rehash":  # edited and re-hashed, so only the next entry's link breaks
        rows[i]["actor"] = "mallory"
        rows[i]["entry_hash"] = audit.entry_hash(rows[i]["prev_hash"], rows[i]["seq"], rows[i]["at"], "mallory",
                                                 rows[i]["action"], rows[i]["entity"], rows[i]["entity_id"],
                                                 rows[i]["payload"])
    return rows


def split(rows: list[dict], after_seqs: list[int]) -> list[list[dict]]:
    """Stretches by seq bounds, as the store reads them (seq in (lo, hi])."""
    bounds = [0, *after_seqs, 10**9]
    return [[r for r in rows if lo < r["seq"] <= hi] for lo, hi in zip(bounds, bounds[1:])]


N = 12
SPLITS = [[k] for k in range(1, N)] + [[3, 7], [5, 6], [1, 11], [4, 4], [0, 12]]


@pytest.mark.parametrize("how", ["intact", "edit", "delete", "swap", "rehash"])
def test_joined_stretches_equal_one_pass_for_every_tamper_position_and_seam(how):
    entries = chain(N)
    # the last entry deleted, or edited and re-hashed, leaves a shorter or different valid
    # chain: only a head saved elsewhere tells (test_review_store's cut_tail)
    positions = [1] if how == "intact" else range(1, N + 1 if how == "edit" else N)
    for at in positions:
        rows = entries if how == "intact" else tampered(entries, how, at)
        expected = audit.verify_entries_to_head(rows)
        if how != "intact":
            assert expected[0] is False, (how, at)
        for after in SPLITS:
            checks = [audit.verify_segment(stretch) for stretch in split(rows, after)]
            assert audit.join_segments((0, audit.GENESIS_HASH), checks) == expected, (how, at, after)


def test_joined_stretches_from_a_verified_entry():
    entries = chain(N)
    start = (4, entries[3]["entry_hash"])
    later = [e for e in entries if e["seq"] > 4]
    for after in ([6], [8, 10], [12]):
        checks = [audit.verify_segment(s) for s in split(later, after)]
        assert audit.join_segments(start, checks) == audit.verify_entries_to_head(later, start)
    # a stretch that does not start right after the verified entry
    checks = [audit.verify_segment(s) for s in split([e for e in later if e["seq"] != 5], [8])]
    assert audit.join_segments(start, checks) == (False, 6, start)
    assert audit.join_segments(start, []) == (True, None, start)
