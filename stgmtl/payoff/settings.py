"""The settings of one payoff experiment, declared and checked in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from stgmtl._checks import check_bool, check_choice, check_float, check_int, fail
from stgmtl.affinity import TaskAffinity
from stgmtl.payoff.architectures import architecture
from stgmtl.payoff.plan import ONE_MODEL_VARIANTS, TRUTH_MODES

__all__ = ["PayoffSettings"]


@dataclass(frozen=True)
class PayoffSettings:
    """What :func:`stgmtl.payoff.run_payoff` trains and how it decides.

    Attributes
    ----------
    seeds : sequence of int
        Exploration seeds: the truth, the groupings and the choice on validation.
    truth : {"auto", "subsets", "pairs", "none"}
        Ground-truth runs (:data:`stgmtl.payoff.plan.TRUTH_MODES`).
    max_pairs : int, optional
        With ``truth="pairs"``: train a seeded sample of this many pairs.
    singles : bool, optional
        Train single-task networks (default: whenever there is a truth, or ``T <= 30``).
    signals : sequence of str or mapping, optional
        Signal names to record, or precomputed ``{name: TaskAffinity}`` (default: every signal
        the recipe can record). ``"label"`` and ``"random"`` are always present as controls.
    signal_seeds : sequence of int, optional
        Seeds of the recording runs (default: the first seed).
    record_separately : bool
        One recording run per probe signal, one for the free signals together.
    ks : sequence of int
        Numbers of groups.
    architectures : sequence of str
        Registry names (:data:`stgmtl.payoff.architectures.ARCHITECTURES`).
    random_partitions : int
        Fixed random partitions per ``k`` (group sizes as equal as possible), each trained with
        every architecture on every seed: the control a signal's partition is ranked against
        (19 or more for a claim at 5 %; fewer only give a percentile of that resolution).
    target_entropy : float
        Mean normalised membership entropy of ``"separate-soft"``, fixed in advance (not
        chosen on validation).
    budget : float, optional
        Inference budget of the recommendation, in parameters of one model (default: the
        largest budget any architecture uses at the given ``ks``).
    confirm_seeds : int
        Fresh seeds on which the candidate and its reference are retrained for the verdict
        (0: no confirmation; the recommendation then stays one model, "unconfirmed").
    alpha : float
        Level of the confirmation test and of every corrected test.
    threads : int, optional
        torch threads inside each run.
    cache_dir : str, optional
        Run cache (default ``<out>/cache``).
    factory_id : str, optional
        Stable identity of the factory for the cache.
    n_bootstrap, n_permutations : int
        Resamples of the signal scores.
    column : str
        The per-task loss (``"loss"``: the training objective; ``"bce"``: plain BCE).
    group_sizes : sequence of int
        With ``truth="pairs"``: also train groups of these sizes (3 to ``T``) as truth, for the
        gain predictor (:mod:`stgmtl.payoff.predictor`); default none. They need pair truth: an
        explicit other ``truth`` raises here, and ``truth="auto"`` raises when the plan resolves
        it to something else. The trained groups are systems like any other, so they also
        become candidates of :func:`~stgmtl.payoff.recommendation.recommend` (the verdict may
        choose one).
    max_groups : int, optional
        A seeded sample of this many groups per size in ``group_sizes`` (default: every group;
        only with ``group_sizes``).
    random_state : int
        Seeds pair and group sampling, random partitions, the random control and the resamples.
    one_model_variants : sequence of str
        How the one model for all tasks is trained (:data:`~stgmtl.payoff.plan.
        ONE_MODEL_VARIANTS`): ``"plain"`` (always; the default alone) and ``"uncertainty"``
        (the loss-balancing baseline: uncertainty weighting, Kendall et al. 2018). Every
        variant is trained at every budget on every seed (paired with the plain one model); the
        recommendation's reference is the one model, of any variant and budget within the
        budget, with the lowest validation loss, and the fresh-seed confirmation tests the
        candidate against it.
    """

    seeds: Sequence[int] = (0, 1, 2)
    truth: str = "auto"
    max_pairs: int | None = None
    singles: bool | None = None
    signals: Sequence[str] | Mapping[str, TaskAffinity] | None = None
    signal_seeds: Sequence[int] | None = None
    record_separately: bool = True
    ks: Sequence[int] = (2, 3)
    architectures: Sequence[str] = ("network",)
    random_partitions: int = 3
    target_entropy: float = 0.3
    budget: float | None = None
    confirm_seeds: int = 5
    alpha: float = 0.05
    threads: int | None = None
    cache_dir: str | None = None
    factory_id: str | None = None
    n_bootstrap: int = 1000
    n_permutations: int = 1000
    column: str = "loss"
    random_state: int = 0
    group_sizes: Sequence[int] = ()
    max_groups: int | None = None
    one_model_variants: Sequence[str] = ("plain",)

    def __post_init__(self) -> None:
        seeds = tuple(check_int("seeds", s, low=0) for s in self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise fail("seeds", "distinct seeds", self.seeds)
        object.__setattr__(self, "seeds", seeds)
        if self.truth not in TRUTH_MODES:
            raise fail("truth", f"one of {TRUTH_MODES}", self.truth)
        if self.max_pairs is not None:
            check_int("max_pairs", self.max_pairs, low=1)
        ks = tuple(sorted({check_int("ks", k, low=1) for k in self.ks}))
        if not ks:
            raise fail("ks", "at least one number of groups", self.ks)
        object.__setattr__(self, "ks", ks)
        archs = tuple(str(a) for a in self.architectures)
        for a in archs:
            architecture(a)
        object.__setattr__(self, "architectures", archs)
        check_int("random_partitions", self.random_partitions, low=0)
        check_float("target_entropy", self.target_entropy, low=0.0, high=0.999, low_open=True)
        if self.budget is not None:
            check_float("budget", self.budget, low=1.0)
        check_int("confirm_seeds", self.confirm_seeds, low=0)
        if self.confirm_seeds == 1:
            raise fail("confirm_seeds", "0 (no confirmation) or at least 2", 1)
        check_float("alpha", self.alpha, low=0.0, high=0.5, low_open=True)
        check_bool("record_separately", self.record_separately)
        if self.threads is not None:
            check_int("threads", self.threads, low=1)
        check_int("n_bootstrap", self.n_bootstrap, low=1)
        check_int("n_permutations", self.n_permutations, low=1)
        if self.column not in ("loss", "bce"):
            raise fail("column", "'loss' or 'bce'", self.column)
        check_int("random_state", self.random_state, low=0)
        sizes = tuple(sorted({check_int("group_sizes", g, low=3) for g in self.group_sizes}))
        object.__setattr__(self, "group_sizes", sizes)
        if sizes and self.truth not in ("pairs", "auto"):
            raise fail("truth", "'pairs' with group_sizes (groups beyond pairs are trained only "
                       "with pair truth; set truth='pairs' or drop group_sizes)",
                       self.truth)  # fmt: skip
        if self.max_groups is not None:
            check_int("max_groups", self.max_groups, low=1)
            if not sizes:
                raise fail("max_groups", "None without group_sizes (it samples the groups of "
                           "the sizes in group_sizes)", self.max_groups)  # fmt: skip
        if isinstance(self.one_model_variants, str):
            raise fail("one_model_variants", "a sequence of variant names, e.g. ('plain', "
                       "'uncertainty')", self.one_model_variants, error=TypeError)  # fmt: skip
        variants = tuple(self.one_model_variants)
        for v in variants:
            check_choice("one_model_variants", v, ONE_MODEL_VARIANTS)
        if "plain" not in variants or len(set(variants)) != len(variants):
            raise fail("one_model_variants", "distinct variants including 'plain' (the one "
                       "model every grouping is compared with)", variants)  # fmt: skip
        object.__setattr__(self, "one_model_variants", variants)

    def budgets(self) -> list[float]:
        """The budgets the groupings use (one model is trained at each as a reference)."""
        used = {architecture(a).budget(k) for a in self.architectures for k in self.ks}
        return sorted(used | {1.0} | ({float(self.budget)} if self.budget else set()))

    def resolved_budget(self) -> float:
        """The recommendation's budget: as given, else the largest budget any grouping uses."""
        return float(self.budget) if self.budget is not None else max(self.budgets())

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (precomputed signals by name; ``one_model_variants`` only when
        not the default, so that the settings of default runs read as before)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for k in ("seeds", "ks", "architectures", "signal_seeds", "signals", "group_sizes",
                  "one_model_variants"):  # fmt: skip
            if out[k] is not None:
                out[k] = sorted(out[k]) if isinstance(out[k], Mapping) else list(out[k])
        if out["one_model_variants"] == ["plain"]:
            del out["one_model_variants"]
        return out
