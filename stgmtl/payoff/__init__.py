"""The payoff harness: does training tasks together pay off, on a user's own suite?

One experiment, in one room (see :mod:`.harness`): train the truth (single tasks, pairs, all
tasks), record and score the affinity signals, train the groupings they imply at an equal,
asserted budget (:mod:`.architectures`) beside fixed random partitions and the budget-matched
one model, choose on validation (:mod:`.recommendation`), then confirm the choice on fresh seeds
with a paired test (:mod:`.confirm`, statistics in :mod:`.stats`). Runs are independent and
cached (:mod:`.runs`, :mod:`.worker`, :mod:`.execution`), so any executor can train them.

Suites with a known answer (planted negative transfer of graded strength, the exact null) are
built by :mod:`.planted`; :mod:`.study` measures the verdict's power and false-positive rate
on them.
"""

from __future__ import annotations

from stgmtl._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Splits": "stgmtl.payoff.splits",
    "RunSpec": "stgmtl.payoff.runs",
    "run_all": "stgmtl.payoff.execution",
    "GroundTruth": "stgmtl.payoff.truth",
    "ground_truth": "stgmtl.payoff.truth",
    "score_signals": "stgmtl.payoff.scoring",
    "select_networks": "stgmtl.payoff.search",
    "partition_from_affinity": "stgmtl.payoff.search",
    "m_for_entropy": "stgmtl.payoff.softness",
    "PayoffResult": "stgmtl.payoff.tables",
    "run_payoff": "stgmtl.payoff.harness",
    "recommend": "stgmtl.payoff.recommendation",
    "Recommendation": "stgmtl.payoff.recommendation",
    "planted_suite": "stgmtl.payoff.planted",
    "two_image_suite": "stgmtl.payoff.planted",
    "exact_null_suite": "stgmtl.payoff.planted",
    "PlantedSuite": "stgmtl.payoff.planted",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
