"""What ``captum-gmar repair`` pastes for a cluster of maps: its mark where the mark alone
raises the class, else the whole region the transplant confirmed, with its images' pixel
proxies that confirm."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from captum_gmar.cli import repair_shortcut
from captum_gmar.cli.repair_shortcut import PASTES, Found, _mark_or_region
from captum_gmar.exploration.intervention import OneOf
from captum_gmar.exploration.transplant import CONFIRMS_BY
from captum_gmar.repair import HELD_OUT, Labelled, Shortcut


def _found() -> Found:
    return Found(3, "Dress", 4, True, "confirmed", "its region", "region of 1 patch", "as explore put it on", {"region": [[0, 0]]})


def _images(count: int, seed: int) -> torch.Tensor:
    # 16 images at least: with 4, chance alone lifts a few random pixels above the mark's bar
    return torch.rand(count, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _pastes(members: torch.Tensor, rest: torch.Tensor) -> dict[str, Shortcut]:
    return {
        words: Shortcut.of_region(3, ((0, 0),), (8, 8), members, rest, whole) for words, whole in zip(PASTES, (False, True), strict=True)
    }


@pytest.fixture
def data() -> Labelled:
    generator = torch.Generator().manual_seed(0)
    return Labelled(torch.rand(20, 3, 64, 64, generator=generator), torch.arange(20) % 5)


def test_the_mark_is_pasted_where_it_raises_the_class_and_the_whole_region_where_it_does_not(data, monkeypatch):
    members, rest = _images(16, 1), _images(16, 2)
    members[:, :, :2, :2] = 1.0  # four pixels drawn alike on every member: the mark
    pastes = _pastes(members, rest)
    mark, region = pastes.values()
    assert int(mark.intervention.mask.sum()) == 4 and int(region.intervention.mask.sum()) == 64
    rises: list[float] = []

    train, _ = data.split(HELD_OUT, 0)  # as repair() splits it: the held-out fifth stays out

    def confirmed_by(shortcuts, model, images, at_least, seed=0):
        assert shortcuts == [mark] and at_least == CONFIRMS_BY
        assert torch.equal(images, train.pixels[train.labels != 3])  # the training images of other classes, fewer than 64
        return None, [rises[-1]]

    monkeypatch.setattr("captum_gmar.repair.confirmed_by", confirmed_by)
    rises.append(CONFIRMS_BY)
    found, shortcut = _mark_or_region(_found(), pastes, None, data, 0)
    assert shortcut is mark and found.put_on == "as explore put it on"  # the words as given
    assert found.recorded == {"region": [[0, 0]], "mark_rise": CONFIRMS_BY, "mark_pixels": 4, "pasted": "mark"}
    rises.append(CONFIRMS_BY / 4)
    found, shortcut = _mark_or_region(_found(), pastes, None, data, 0)
    assert shortcut is region and found.recorded["pasted"] == "region" and found.recorded["mark_rise"] == CONFIRMS_BY / 4
    assert found.put_on.startswith(PASTES[1]) and f"its mark, 4 pixels, raised the class by {CONFIRMS_BY / 4:+.3f}" in found.put_on


def test_a_mark_that_is_the_whole_region_is_pasted_without_a_pass(data, monkeypatch):
    # nothing drawn alike: mark_mask keeps the whole region, and nothing is measured
    monkeypatch.setattr(repair_shortcut, "_other_images", lambda *args: pytest.fail("a pass over other classes' images"))
    pastes = _pastes(_images(16, 1), _images(16, 2))
    found, shortcut = _mark_or_region(_found(), pastes, None, data, 0)
    assert shortcut is pastes[PASTES[0]] and found == _found()


def test_the_other_classes_images_are_at_most_64_of_the_training_split():
    data = Labelled(torch.arange(300.0)[:, None, None, None].expand(300, 3, 2, 2), torch.arange(300) % 5)
    images = repair_shortcut._other_images(_found(), data, 0)
    train, _ = data.split(HELD_OUT, 0)
    firsts = {float(image[0, 0, 0]) for image in images}
    assert len(images) == 64 == len(firsts) and firsts <= {float(v) for v in train.pixels[train.labels != 3][:, 0, 0, 0]}


def test_a_region_pasted_whole_is_put_on_through_its_images_proxies_that_confirm_instead(data, monkeypatch):
    members, rest = _images(16, 1), _images(16, 2)
    region = _pastes(members, rest)[PASTES[1]]
    proxies = repair_shortcut.pixel_proxies(3, members, rest)
    assert list(proxies) == list(repair_shortcut.PIXEL_PROXIES)
    rises: list[float] = []

    def confirmed_by(shortcuts, model, images, at_least, seed=0):
        assert shortcuts == list(proxies.values()) and at_least == CONFIRMS_BY
        assert len(images) == 12  # the training split's: 12 of the 16 images of other classes
        kept = sorted((r, i) for i, r in enumerate(rises) if r >= at_least)[::-1]  # the strongest first
        ways = [shortcuts[i] for _, i in kept]
        return (Shortcut.one_of(ways) if len(ways) > 1 else ways[0] if ways else None), list(rises)

    monkeypatch.setattr("captum_gmar.repair.confirmed_by", confirmed_by)
    given = dataclasses.replace(_found(), put_on=PASTES[1])
    words = repair_shortcut.PIXEL_PROXIES
    rises[:] = [0.01, 0.02, CONFIRMS_BY + 0.2]  # the difference alone confirms: it, not the region
    found, shortcut = repair_shortcut._spread(given, region, proxies, None, data, 0)
    assert shortcut is proxies[words[2]] and found.recorded["pasted"] == "proxies"
    assert found.put_on == f"{words[2]} (in place of its whole region pasted)"
    assert [(p["put_on"], p["rise"], p["kept"]) for p in found.recorded["proxies"]] == [
        (words[0], 0.01, False),
        (words[1], 0.02, False),
        (words[2], CONFIRMS_BY + 0.2, True),
    ]
    rises[:] = [CONFIRMS_BY + 0.1, 0.02, CONFIRMS_BY + 0.2]  # two: one of them drawn per image, the strongest first
    found, shortcut = repair_shortcut._spread(given, region, proxies, None, data, 0)
    assert isinstance(shortcut.intervention, OneOf)
    assert shortcut.intervention.parts == (proxies[words[2]].intervention, proxies[words[0]].intervention)
    assert torch.equal(shortcut.members, members) and torch.equal(shortcut.rest, rest)  # the cluster's own images
    assert found.put_on.startswith(f"one of, drawn per image: {words[2]}; or {words[0]} (in place of its whole region")
    rises[:] = [0.01, 0.02, 0.03]  # none: the region, as given, every rise recorded
    found, shortcut = repair_shortcut._spread(given, region, proxies, None, data, 0)
    assert shortcut is region and found.put_on == PASTES[1] and "pasted" not in found.recorded
    assert [p["kept"] for p in found.recorded["proxies"]] == [False, False, False]
