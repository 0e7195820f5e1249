"""Every real advisory of `advisories.jsonl` (RustSec, Go, PyPA, FriendsOfPHP) loads: none is dropped.

The records are fed as a feed would publish them (date-only `published`, partial and non-SemVer
versions left as written); the loader must repair what has one meaning, keep every readable
range, and send what it cannot read to review. The counts are printed for the closing notes.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from powerx_governance.catalog.loader import Loaded, add_advisory
from powerx_governance.policy.matching import read_affected
from tests.shared_data import osv_record, require_shared, shared_package


def _lines() -> list[dict[str, Any]]:
    path = require_shared("data/advisories/advisories.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _kind(message: str) -> str:
    if "has no time or zone" in message:
        return "date without a time"
    if message.startswith("partial version"):
        return "partial version padded"
    if "no readable `introduced`" in message:
        return "range left out (no readable start)"
    if "nothing of its affected data" in message:
        return "plugin sent to review (nothing readable)"
    if "is not a SemVer" in message:
        return "version or event left out (not SemVer)"
    return re.sub(r"'[^']*'", "…", message)[:60]


def test_every_real_record_loads_and_each_repair_is_counted() -> None:
    lines = _lines()
    loaded = Loaded()
    dropped = [
        line["id"]
        for line in lines
        if add_advisory(osv_record(line), "advisories.jsonl", loaded, line["id"]) is None
    ]
    repairs = Counter(_kind(w.error) for w in loaded.warnings)
    losses = Counter(_kind(p.error) for p in loaded.problems)
    review = Counter(
        line["ecosystem"]
        for line, advisory in zip(lines, loaded.advisories, strict=True)
        if read_affected(advisory).specs[shared_package(line)].unreadable is not None
    )
    print(  # noqa: T201 - the counts go into the closing notes (pytest -s shows them)
        f"\n{len(lines)} records, {len(loaded.advisories)} loaded, {len(dropped)} dropped\n"
        f"repairs (warnings): {dict(repairs.most_common())}\n"
        f"parts left out (errors): {dict(losses.most_common())}\n"
        f"records sent to review by ecosystem: {dict(review.most_common())}"
    )
    assert dropped == []
    assert len(loaded.advisories) == len(lines)
    date_only = sum(1 for line in lines if re.fullmatch(r"\d{4}-\d{2}-\d{2}", line.get("published") or ""))
    assert repairs["date without a time"] >= date_only > 1000
    assert repairs["partial version padded"] > 0
    # SemVer ecosystems lose nothing: every Go and crates.io record is read whole.
    assert not review.get("Go")
    assert not review.get("crates.io")
