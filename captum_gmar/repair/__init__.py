"""From a confirmed shortcut to a repaired model.

One way in for every repair (:data:`REPAIRS`): each takes the model, the
:class:`~captum_gmar.repair.shortcut.Shortcut`, the labelled images to train on and to
hold out, and the settings, and returns the repaired model and what it changed, so that
:func:`repair` compares them in one loop and a new repair is one file and one entry.

- ``heads`` (:mod:`~captum_gmar.repair.heads`): the heads that carry the shortcut removed,
  as many as measurement says;
- ``finetune`` (:mod:`~captum_gmar.repair.finetune`): a brief counterfactual fine-tune;
- ``classifier`` (:mod:`~captum_gmar.repair.classifier`): the classifier alone retrained on
  the backbone's features, the backbone left as it was (for a frozen backbone and its probe);
- ``project`` (:mod:`~captum_gmar.repair.project`): the directions the shortcut moves the
  classifier's inputs in, projected out of a linear classifier (P-ClArC), nothing trained;
- ``refit`` (:mod:`~captum_gmar.repair.refit`): the projection, then the classifier fitted
  again blind to its directions, on the images that do not carry the shortcut;
- ``auto`` (:data:`AUTO`): the heads, then the projection, then its refit, then the
  fine-tune; the first that removes nine tenths of the transplant rise within the budget
  as measured, does not leave the class called less often on the shortcut's own images
  than on the rest of it, takes the class's lead on them and does not call the rest of the
  class less often, beyond chance, ends it once its refinement (:data:`REFINES`) is tried
  (:mod:`~captum_gmar.repair.choice` says how one is kept of those tried); all four
  against a change drawn afresh on every image with a lead to judge, where the least of
  the rises' root mean square decides among those the rules leave.

Every repair is judged alike (:func:`~captum_gmar.repair.measurement.measure`): the transplant
rise on held-out images of other classes, before and after, and the clean accuracy overall
and per class, on the held-out images that do not carry the shortcut
(:func:`~captum_gmar.repair.shortcut.carriers`); and, for the model before and each
repair's, the class's score on the shortcut's own images against the rest of its class,
the shortcut itself where the rise measures what puts it on. The repaired model is a
standard transformers model of its class.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from torch import nn

from ..errors import UnsupportedModelError
from .choice import as_well, by_spread, choose, costs_class, measured_within, misses, repairs
from .classifier import repair_classifier
from .finetune import repair_finetune
from .heads import repair_heads
from .measurement import LEADS, REACHES, Measurement, OwnImages, measure
from .project import repair_project
from .refit import repair_refit
from .shortcut import Labelled, Shortcut, carriers, confirmed_by, pixel_proxies, regroup

__all__ = [
    "AUTO",
    "HELD_OUT",
    "LEADS",
    "REACHES",
    "REFINES",
    "REPAIRS",
    "Labelled",
    "Measurement",
    "OwnImages",
    "Repaired",
    "Shortcut",
    "carriers",
    "confirmed_by",
    "measure",
    "pixel_proxies",
    "regroup",
    "repair",
]

How = Literal["heads", "finetune", "classifier", "project", "refit", "auto"]

#: the share of each class's labelled images :func:`repair` keeps out to measure on
HELD_OUT = 0.2


@dataclass(frozen=True)
class Settings:
    """What the repairs may spend: clean accuracy (a share: 0.01 is one point), heads, steps."""

    budget: float = 0.01
    max_heads: int = 12
    steps: int = 300
    seed: int = 0
    progress: bool = True


def _heads(
    model: nn.Module, shortcut: Shortcut, train: Labelled, held_out: Labelled, settings: Settings
) -> tuple[nn.Module, dict[str, Any]]:
    found = repair_heads(model, shortcut, held_out, settings.budget, settings.max_heads, settings.progress, settings.seed)
    return found.model, {"heads": [list(head) for head in found.heads], "curve": _points(found.curve, "heads")}


def _points(curve: tuple[tuple[int, Measurement], ...], unit: str) -> list[dict[str, float | None]]:
    """A curve as ``repair.json`` keeps it: each step's count of ``unit``, its rise (and the
    images' rises' root mean square: ``None`` where not known), clean accuracy, and the
    cost's standard error from the first."""
    first = curve[0][1]
    return [
        {
            unit: k,
            "rise": m.rise,
            "rise_rms": None if math.isnan(m.rise_rms) else m.rise_rms,
            "accuracy": m.accuracy,
            "cost_error": first.cost_error(m),
        }
        for k, m in curve
    ]


def _finetune(
    model: nn.Module, shortcut: Shortcut, train: Labelled, held_out: Labelled, settings: Settings
) -> tuple[nn.Module, dict[str, Any]]:
    repaired = repair_finetune(model, shortcut, train, settings.steps, seed=settings.seed, progress=settings.progress)
    return repaired, {"steps": settings.steps, "trained_on": len(train)}


def _project(
    model: nn.Module, shortcut: Shortcut, train: Labelled, held_out: Labelled, settings: Settings
) -> tuple[nn.Module, dict[str, Any]]:
    found = repair_project(model, shortcut, train, held_out, settings.budget, progress=settings.progress, seed=settings.seed)
    tried = [
        {"ridge": ridge, "curve": _points(curve, "directions"), "lead_removed": lead}
        for (ridge, curve), lead in zip(found.curves, found.leads, strict=True)
    ]
    curve = _points(found.curve, "directions")
    return found.model, {"directions": found.k, "share": found.share, "ridge": found.ridge, "curve": curve, "ridges": tried}


def _refit(
    model: nn.Module, shortcut: Shortcut, train: Labelled, held_out: Labelled, settings: Settings
) -> tuple[nn.Module, dict[str, Any]]:
    found = repair_refit(model, shortcut, train, held_out, settings.budget, progress=settings.progress, seed=settings.seed)
    projected = found.projected
    fits = [{"ridge": ridge, "held_out_distance": far, "misses_own_images": misses} for ridge, far, misses in found.fits]
    changed = {
        "directions": projected.k,
        "share": projected.share,
        "ridge": projected.ridge,
        "curve": _points(projected.curve, "directions"),
    }
    return found.model, {**changed, "fit_ridge": found.ridge, "fits": fits, "trained_on": found.trained_on}


def _classifier(
    model: nn.Module, shortcut: Shortcut, train: Labelled, held_out: Labelled, settings: Settings
) -> tuple[nn.Module, dict[str, Any]]:
    repaired = repair_classifier(model, shortcut, train, settings.steps, seed=settings.seed, progress=settings.progress)
    return repaired, {"steps": settings.steps, "trained_on": len(train)}


#: every repair by name: ``(model, shortcut, train, held_out, settings) -> (model, what it changed)``
REPAIRS: dict[str, Callable[[nn.Module, Shortcut, Labelled, Labelled, Settings], tuple[nn.Module, dict[str, Any]]]] = {
    "heads": _heads,
    "finetune": _finetune,
    "classifier": _classifier,
    "project": _project,
    "refit": _refit,
}


#: what ``auto`` tries, in this order: the two that train nothing first, the heads (tried
#: first before the projection existed) then the projection, then the projection's refit,
#: which trains the classifier alone, and last the fine-tune, which trains every weight. The
#: first that :func:`~captum_gmar.repair.choice.repairs` the shortcut ends it once its
#: refinement is tried, except where the spread of the rises tells them apart
#: (:func:`~captum_gmar.repair.choice.by_spread`: all are tried). A repair refused (a
#: projection of a classifier that is not linear) passes to the next.
AUTO = ("heads", "project", "refit", "finetune")

#: a repair, and the one that refines it (the refit runs the projection again, then fits;
#: 14 s and 31 s on the Pullovers' grain): tried after the first repairs the shortcut (on a
#: planted noise model the projection removed 80% of the drawn noise and took 75% of the
#: lead on the cluster's own images, its refit 83% and 96%; docs/repair.md), it takes the
#: first's place wherever it passes every bar the first passes (:func:`~captum_gmar.repair.choice.as_well`)
REFINES = {"project": "refit"}


@dataclass(frozen=True)
class Attempt:
    """One repair tried: its name, the model, the measurement after, the time, what it changed."""

    how: str
    model: nn.Module | None
    after: Measurement | None
    seconds: float
    changed: dict[str, Any] = field(default_factory=dict)
    #: why it did not run, or ``None``
    refused: str | None = None
    #: a gentler form of an earlier attempt (fewer steps: :func:`_gentler`), kept only within the budget
    gentler: bool = False


@dataclass(frozen=True)
class Repaired:
    """The repairs tried on one shortcut, and the one chosen (see :func:`repair`)."""

    before: Measurement
    attempts: tuple[Attempt, ...]
    #: the chosen attempt's model (``None`` where every repair was refused)
    chosen: Attempt | None
    #: the clean accuracy a repair may cost (a share: 0.01 is one point)
    budget: float = 0.01

    def table(self) -> list[dict[str, Any]]:
        """One row per attempt, and one for the model as it was: the transplant rise, its
        standard error, its images' rises' root mean square, and the share of it removed
        (where the rise before stands beyond twice its error: :meth:`Measurement.rise_stands`),
        clean accuracy and its cost in points with the cost's standard error (paired: the held-out images that turned;
        ``over_budget`` where the cost less that error is more than the budget:
        :meth:`Measurement.over`), the worst class and its accuracy, the class's mean score
        on the shortcut's own images and on the rest of its class, the share of each called
        the class, whether it calls the rest less often (``costs_class``:
        :meth:`OwnImages.costs_class`), and the share of the former's lead taken away
        (:class:`OwnImages`: the shortcut itself, where the rise is its proxy's), the time,
        and a note (why a repair did not run; where a curve, the heads' or the projection's,
        stopped short of its best rise; the projection's ridges; a cost within the budget
        only by its standard error; a repair that misses the class on the shortcut's own
        images)."""
        rows = [self._row("none (as it was)", self.before, 0.0)]
        rows += [self._row(a.how, a.after, a.seconds, a.refused or _notes(a, self.before, self.budget)) for a in self.attempts]
        return rows

    def _row(self, how: str, after: Measurement | None, seconds: float, note: str | None = None) -> dict[str, Any]:
        if after is None:
            return {
                "repair": how,
                **dict.fromkeys(
                    (
                        "transplant_rise",
                        "transplant_rise_error",
                        "transplant_rise_rms",
                        "removed",
                        "accuracy",
                        "cost_points",
                        "cost_error_points",
                        "over_budget",
                        "worst_class",
                        "worst_class_accuracy",
                        "clean_images",
                        "own_images_score",
                        "rest_of_class_score",
                        "own_images_called",
                        "rest_of_class_called",
                        "misses_own_images",
                        "costs_class",
                        "lead_removed",
                    )
                ),
                "seconds": seconds,
                "note": note,
            }
        worst = min(after.per_class, key=after.per_class.__getitem__) if after.per_class else None
        cost = self.before.cost(after)
        return {
            "repair": how,
            "transplant_rise": after.rise,
            "transplant_rise_error": None if math.isnan(after.rise_error) else after.rise_error,
            "transplant_rise_rms": None if math.isnan(after.rise_rms) else after.rise_rms,
            "removed": 1 - after.rise / self.before.rise if self.before.rise_stands() else None,
            "accuracy": after.accuracy,
            "cost_points": 100 * cost,
            "cost_error_points": 100 * self.before.cost_error(after),
            "over_budget": self.before.over(after, self.budget),
            "worst_class": worst,
            "worst_class_accuracy": None if worst is None else after.per_class[worst],
            "clean_images": after.counted,
            "own_images_score": None if after.own is None else after.own.score,
            "rest_of_class_score": None if after.own is None else after.own.rest_score,
            "own_images_called": None if after.own is None else after.own.called,
            "rest_of_class_called": None if after.own is None else after.own.rest_called,
            "misses_own_images": None if after.own is None or self.before.own is None else misses(self.before, after),
            "costs_class": None if after.own is None or self.before.own is None else costs_class(self.before, after),
            "lead_removed": self.before.lead_removed(after),
            "seconds": seconds,
            "note": note,
        }


#: the curves a repair keeps (``changed["curve"]``), by the key each step counts with: its unit and what was done
CURVES = {"heads": ("head", "removed"), "directions": ("direction", "projected out")}


def _notes(attempt: Attempt, before: Measurement, budget: float) -> str | None:
    """What the table's note says of an attempt that ran (:func:`_curve_note`,
    :func:`_ridge_note`, :func:`_error_note`, and where it misses the class on the
    shortcut's own images: :func:`~captum_gmar.repair.choice.misses`)."""
    missed = attempt.after is not None and misses(before, attempt.after)
    notes = (
        _curve_note(attempt, budget, before.drawn),
        _ridge_note(attempt),
        _error_note(before, attempt.after, budget),
        "calls the class on the shortcut's own images less often than on the rest of its class" if missed else None,
    )
    return "; ".join(note for note in notes if note) or None


def _error_note(before: Measurement, after: Measurement | None, budget: float) -> str | None:
    """Where a repair costs more than the budget as measured but not beyond its standard
    error (not "over the budget", yet not within it as
    :func:`~captum_gmar.repair.choice.measured_within` asks): said, since such a one may
    cost more on new images (the heads on two tags: 2.6 ± 1.9 held out, 1.5 on the test
    scenes; docs/results.md)."""
    if after is None or before.over(after, budget) or measured_within(before, after, budget):
        return None
    return f"within the budget of {100 * budget:g} only by its standard error"


def _ridge_note(attempt: Attempt) -> str | None:
    """Where the projection tried more than one ridge (:data:`~captum_gmar.repair.project.RIDGES`):
    the one its directions went through, of those tried, or that none kept a direction."""
    tried = [entry["ridge"] for entry in attempt.changed.get("ridges") or []]
    if len(tried) < 2:
        return None
    listed = ", ".join(f"{r:g}" for r in tried)
    if not attempt.changed["directions"]:
        return f"no ridge kept a direction (tried {listed})"
    return f"through the ridge {attempt.changed['ridge']:g} (tried {listed})"


def _curve_note(attempt: Attempt, budget: float, drawn: bool = False) -> str | None:
    """Where a curve (the heads', the projection's) stopped because its next step cost more
    than the budget: what that step would have done (its rise and cost, and, against a
    change drawn afresh (``drawn``), whose rises cancel in their mean, its rises' root mean
    square), which the chosen row does not show."""
    curve = attempt.changed.get("curve") or []
    if len(curve) < 2:
        return None
    error = curve[-1].get("cost_error", 0.0)
    if curve[0]["accuracy"] - curve[-1]["accuracy"] - (0.0 if math.isnan(error) else error) <= budget:
        return None
    kept, refused = len(curve) - 2, curve[-1]
    key = next((key for key in CURVES if key in refused), None)
    if key is None:
        return None  # a curve of another unit: add it to CURVES to have its note
    unit, done = CURVES[key]
    cost = 100 * (curve[0]["accuracy"] - refused["accuracy"])
    rms = refused.get("rise_rms")
    spread = f" (root mean square {rms:.3f})" if drawn and rms is not None else ""
    return (
        f"{kept} {unit}{'' if kept == 1 else 's'} {done}: {refused[key]} took the rise to {refused['rise']:.3f}{spread} "
        f"but cost {cost:.1f} points, over the budget of {100 * budget:g}"
    )


def repair(
    model: nn.Module,
    shortcut: Shortcut,
    data: Labelled,
    how: How = "auto",
    held_out: float = HELD_OUT,
    **settings: Any,
) -> Repaired:
    """Repair ``model`` of ``shortcut``.

    Args:
        model: a supported model in eval mode (not changed).
        shortcut: what to remove.
        data: labelled images of every class (usually training images); a seeded fifth
            (``held_out``) of each class is kept out to measure on, its clean accuracy on
            the images that do not carry the shortcut (:func:`carriers`, by the original model).
        how: ``"heads"``, ``"finetune"``, ``"classifier"``, ``"project"``, ``"refit"`` or
            ``"auto"`` (:data:`AUTO` in turn, as the module says: until one
            :func:`~captum_gmar.repair.choice.repairs` the shortcut and its refinement is tried).
        settings: :class:`Settings`' fields (``budget``, ``max_heads``, ``steps``, ``seed``,
            ``progress``).

    Returns:
        :class:`Repaired`: the measurement before, each attempt (a fine-tune or the
        classifier's retraining that cost more than the budget beyond its standard error is
        tried again with half its steps, then a quarter: :func:`_gentler`), the one chosen
        (:func:`~captum_gmar.repair.choice.choose`): of those that remove nine tenths of
        the transplant rise and are within the budget (its standard error granted), the
        lowest rise among those within it as measured, else among the rest; where none is
        within the budget, the one that costs least accuracy; where none removes nine
        tenths, the lowest rise within the budget, else the lowest rise (the least root
        mean square of the images' rises where that tells them apart:
        :func:`~captum_gmar.repair.choice.by_spread`); its refinement in its place where
        it passes every bar the chosen one passes, that one removing nine tenths within the
        budget (:data:`REFINES`).

    Raises:
        ValueError: ``how`` unknown, or ``data`` without images of another class than the shortcut's.
    """
    if how != "auto" and how not in REPAIRS:
        raise ValueError(f"how must be {', '.join(REPAIRS)} or auto, got {how!r}")
    options = Settings(**settings)
    train, kept = data.split(held_out, options.seed)
    if not (kept.labels != shortcut.target).any():
        raise ValueError("the data hold no image of another class than the shortcut's: nothing to measure its transplant on")
    kept = replace(kept, counted=~carriers(model, shortcut, kept))
    before = measure(model, shortcut, kept, seed=options.seed, own=True)
    attempts: list[Attempt] = []
    spread = by_spread(before)
    for name in AUTO if how == "auto" else [how]:
        did_it = {a.how for a in attempts if repairs(before, a.after, options.budget)}
        if not spread and did_it and name not in {REFINES.get(h) for h in did_it}:
            break  # auto: a cheaper repair did it, and this is not its refinement (where the spread tells them apart, each is tried)
        start = time.perf_counter()
        try:
            repaired, changed = REPAIRS[name](model, shortcut, train, kept, options)
        except UnsupportedModelError as error:
            attempts.append(Attempt(name, None, None, time.perf_counter() - start, refused=str(error)))
            continue
        after = measure(repaired, shortcut, kept, seed=options.seed, own=True)
        attempts.append(Attempt(name, repaired, after, time.perf_counter() - start, changed))
        attempts += _gentler(name, model, shortcut, train, kept, options, before, after)
    # a gentler form counts only within the budget: one that still costs too much saves less than the held-out images tell
    # (on 200, one is half a point), and on the notebook's planted model such a one, chosen, removed less and cost more
    done = [(a, a.after) for a in attempts if a.after is not None and (not a.gentler or not before.over(a.after, options.budget))]
    chosen = choose(before, done, options.budget)
    if chosen is not None and chosen.after is not None:  # its refinement in its place, where tried and as good by every bar
        first = chosen.after
        refined = (a for a, after in done if a.how == REFINES.get(chosen.how) and as_well(before, first, after, options.budget))
        chosen = next(refined, chosen)
    return Repaired(before, tuple(attempts), chosen, options.budget)


#: the repairs that train (``steps``), and so have a gentler form: fewer steps
TRAINED = ("finetune", "classifier")


def _gentler(
    name: str,
    model: nn.Module,
    shortcut: Shortcut,
    train: Labelled,
    kept: Labelled,
    options: Settings,
    before: Measurement,
    after: Measurement,
) -> list[Attempt]:
    """Where a repair that trains cost more than the budget: the same with half its steps,
    then a quarter, while the last still cost too much (each its own attempt, named with its
    steps). Its learning rate is constant, so fewer steps stop it earlier on the same path,
    nearer the original model. :func:`~captum_gmar.repair.choice.choose` keeps one only where it is within the budget."""
    attempts: list[Attempt] = []
    steps = options.steps
    while name in TRAINED and before.over(after, options.budget) and len(attempts) < 2 and steps >= 2:
        steps //= 2
        start = time.perf_counter()
        repaired, changed = REPAIRS[name](model, shortcut, train, kept, replace(options, steps=steps))
        after = measure(repaired, shortcut, kept, seed=options.seed, own=True)
        attempts.append(Attempt(f"{name}, {steps} steps", repaired, after, time.perf_counter() - start, changed, gentler=True))
    return attempts
