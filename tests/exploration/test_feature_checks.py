"""The checks of a cluster of the model's features: a direction the scores depend on is
confirmed and an orthogonal one is not, a null's spread raises what a rise needs, and a
tone curve is judged against the curve from random images of the class."""

import math

import numpy as np
import pytest
import torch

from captum_gmar.exploration.feature_checks import DirectionCheck, direction_check, pixel_check

DIM = 64


def linear_scores(weights: torch.Tensor, recipients: int = 40):
    """Scores that rise with a direction's projection on ``weights``: ``sigmoid(-2 + d . w)``
    on every recipient (their own spread as a small offset)."""
    offsets = torch.linspace(-0.1, 0.1, recipients, dtype=torch.float64)

    def shifted(directions: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-2.0 + directions.double() @ weights.double())[:, None] + offsets[None] * 0.01

    return shifted


def test_a_direction_the_scores_depend_on_is_confirmed_and_an_orthogonal_one_is_not() -> None:
    weights = torch.zeros(DIM)
    weights[0] = 1.0
    along = torch.zeros(DIM)
    along[0] = 4.0
    shifted = linear_scores(weights)
    plain = shifted(torch.zeros(1, DIM))[0]
    check = direction_check(shifted, along, plain, seed=0)
    assert check.rise == pytest.approx(float(torch.sigmoid(torch.tensor(2.0)) - torch.sigmoid(torch.tensor(-2.0))), abs=1e-6)
    assert check.norm == pytest.approx(4.0) and check.recipients == 40
    assert abs(check.random) < 0.1 and check.confirms  # random directions of norm 4 barely touch the first axis
    across = torch.zeros(DIM)
    across[1] = 4.0
    flat = direction_check(shifted, across, plain, seed=0)
    assert flat.rise == pytest.approx(0.0, abs=1e-6) and not flat.confirms
    # below 0.2 nothing could confirm it: the random directions are not drawn
    assert flat.screened and math.isnan(flat.random) and not check.screened
    assert "random directions of the same norm not drawn: the rise is below 0.2" in flat.summary()


def test_the_random_directions_spread_raises_what_a_rise_needs() -> None:
    calm = DirectionCheck(recipients=64, norm=1.0, plain=0.1, rise=0.5, random=0.05, random_spread=0.01)
    wild = DirectionCheck(recipients=64, norm=1.0, plain=0.1, rise=0.5, random=0.05, random_spread=0.2)
    assert calm.needed == pytest.approx(0.2) and calm.beyond == pytest.approx(0.45) and calm.confirms
    assert wild.needed == pytest.approx(0.6) and not wild.confirms
    lowering = DirectionCheck(recipients=64, norm=1.0, plain=0.1, rise=0.25, random=-0.3, random_spread=0.01)
    assert lowering.beyond == pytest.approx(0.25)  # beyond 0 where the random directions lower the class
    assert "raises the class's score from 0.100 by +0.500" in calm.summary()
    undrawn = DirectionCheck(recipients=64, norm=1.0, plain=0.1, rise=0.15, random=math.nan, random_spread=math.nan)
    assert undrawn.screened and undrawn.beyond == pytest.approx(0.15) and undrawn.needed == 0.2 and not undrawn.confirms


def test_a_proxy_in_pixels_is_confirmed_beyond_the_proxy_made_from_random_images_of_the_class() -> None:
    inside = np.arange(40) < 10
    drawn = []

    def rise_of(chosen: np.ndarray) -> float:  # the cluster's images carry the class; random ones a share of that
        drawn.append(chosen.copy())
        return 0.7 * float(chosen[inside].sum()) / chosen.sum()

    check = pixel_check(rise_of, inside, recipients=32, proxy="tone curve", draws=5, seed=3)
    assert check.rise == pytest.approx(0.7) and check.recipients == 32 and check.proxy == "tone curve"
    # the null: five draws of as many images of the class as the cluster holds, at random
    assert len(drawn) == 6 and np.array_equal(drawn[0], inside) and all(d.sum() == 10 for d in drawn[1:])
    expected = [rise_of(d) for d in drawn[1:6]]
    assert check.random == pytest.approx(np.mean(expected)) and check.random_spread == pytest.approx(np.std(expected, ddof=1))
    assert (
        check.confirms
        and "its tone curve, put on 32 images of other classes in pixels, raises the class's score by +0.700" in check.summary()
    )
    # below 0.2 nothing could confirm it: the null is not drawn
    flat = pixel_check(lambda chosen: 0.1, inside, recipients=32, proxy="filter")
    assert (
        flat.screened
        and not flat.confirms
        and "its filter, put on 32 images" in flat.summary()
        and "the filter from random images of the class not drawn: the rise is below 0.2" in flat.summary()
    )
