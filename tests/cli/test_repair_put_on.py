"""What ``captum-gmar repair`` pastes for a cluster of maps: its mark where the mark alone
raises the class; else, in place of the whole region, its images' pixel proxies that
confirm; else the whole region the transplant confirmed. And which grouping of a
cluster's images (of maps or of the features) its proxies are made from."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from captum_gmar.cli import repair_put_on
from captum_gmar.cli.repair_put_on import PASTES, Found, _mark_or_region
from captum_gmar.exploration.intervention import Add, Curve, OneOf, ways
from captum_gmar.exploration.transplant import CONFIRMS_BY
from captum_gmar.repair import HELD_OUT, Labelled, Shortcut, pixel_proxies


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
    monkeypatch.setattr(repair_put_on, "_other_images", lambda *args: pytest.fail("a pass over other classes' images"))
    pastes = _pastes(_images(16, 1), _images(16, 2))
    found, shortcut = _mark_or_region(_found(), pastes, None, data, 0)
    # said as what it is, the whole region pasted, as "pasted" records it
    put_on = f"{PASTES[1]} (its mark, the pixels its images share, is all of it)"
    expected = dataclasses.replace(_found(), put_on=put_on, recorded={"region": [[0, 0]], "pasted": "region"})
    assert shortcut is pastes[PASTES[1]] and found == expected


def test_the_other_classes_images_are_at_most_64_of_the_training_split():
    data = Labelled(torch.arange(300.0)[:, None, None, None].expand(300, 3, 2, 2), torch.arange(300) % 5)
    images = repair_put_on._other_images(_found(), data, 0)
    train, _ = data.split(HELD_OUT, 0)
    firsts = {float(image[0, 0, 0]) for image in images}
    assert len(images) == 64 == len(firsts) and firsts <= {float(v) for v in train.pixels[train.labels != 3][:, 0, 0, 0]}


def _grouped(monkeypatch, groupings: dict[int, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``regroup`` at each layer of ``groupings`` (layer -> bool mask) gives its mask, and
    ``pixel_proxies`` the images it is made from, appended to the list returned."""
    from types import SimpleNamespace

    made: list[tuple[torch.Tensor, torch.Tensor]] = []
    monkeypatch.setattr("captum_gmar.vit.model.VisionTransformer", lambda model: SimpleNamespace(num_layers=6))
    monkeypatch.setattr("captum_gmar.repair.shortcut.regroup_layers", lambda num_layers: tuple(groupings))
    monkeypatch.setattr("captum_gmar.repair.regroup", lambda model, inside, outside, layer: groupings[layer])
    real = pixel_proxies

    def proxies(target, inside, outside):
        made.append((inside, outside))
        return real(target, inside, outside)

    monkeypatch.setattr("captum_gmar.repair.pixel_proxies", proxies)
    return made


def test_a_mark_that_would_be_the_whole_region_gives_way_to_the_images_proxies_that_confirm(data, monkeypatch):
    members, rest = _images(16, 1), _images(16, 2)
    words = list(pixel_proxies(3, members, rest))
    rises = {"mark": 0.0, "proxies": [0.0, 0.0, 0.0, 0.0]}
    asked: list[str] = []

    def confirmed_by(shortcuts, model, images, at_least, seed=0):
        assert at_least == CONFIRMS_BY and len(images) == 12  # the training split's: 12 of the 16 images of other classes
        if len(shortcuts) == len(words):
            asked.append("proxies")
            kept = [s for s, r in sorted(zip(shortcuts, rises["proxies"], strict=True), key=lambda x: -x[1]) if r >= at_least]
            return (Shortcut.one_of(kept) if len(kept) > 1 else kept[0] if kept else None), list(rises["proxies"])
        asked.append("mark")
        return None, [rises["mark"]]

    monkeypatch.setattr("captum_gmar.repair.confirmed_by", confirmed_by)
    # regrouped at layer 2 as given: one grouping, the proxies made from the images as given
    made = _grouped(monkeypatch, {2: torch.arange(32) < 16})

    def put_on(pastes):
        asked.clear()
        return repair_put_on.mark_or_proxies(_found(), None, data, 0, pastes=pastes, members=members, rest=rest)

    marked = members.clone()
    marked[:, :, :2, :2] = 1.0  # four pixels drawn alike on every member: a mark of its own
    with_mark, whole = _pastes(marked, rest), _pastes(members, rest)
    # a mark that raises the class: pasted, the proxies not asked
    rises.update(mark=CONFIRMS_BY, proxies=[0.0, 0.0, CONFIRMS_BY + 0.1, 0.0])
    found, shortcut = put_on(with_mark)
    assert shortcut is with_mark[PASTES[0]] and asked == ["mark"] and found.recorded["pasted"] == "mark" and "proxies" not in found.recorded
    # a mark below the bar, or one that is the whole region: the proxies that confirm, in place of the region
    rises["mark"] = CONFIRMS_BY / 4
    for pastes, measured in ((with_mark, ["mark", "proxies"]), (whole, ["proxies"])):
        found, shortcut = put_on(pastes)
        assert asked == measured and ways(shortcut.intervention) == (shortcut.intervention,) and found.recorded["pasted"] == "proxies"
        assert isinstance(shortcut.intervention, Add) and shortcut.layer == 2  # the difference, told apart where grouped
        assert found.put_on == f"{words[2]} (in place of its whole region pasted)" and found.where == f"region of 1 patch: {words[2]}"
        assert [(p["put_on"], p["rise"], p["kept"]) for p in found.recorded["proxies"]] == [
            (words[0], 0.0, False),
            (words[1], 0.0, False),
            (words[2], CONFIRMS_BY + 0.1, True),
            (words[3], 0.0, False),
        ]
    rises["proxies"] = [CONFIRMS_BY + 0.2, 0.0, CONFIRMS_BY + 0.1, 0.0]  # two: one of them drawn per image
    found, shortcut = put_on(whole)
    assert isinstance(shortcut.intervention, OneOf) and [type(part) for part in shortcut.intervention.parts] == [Curve, Add]
    assert found.put_on == f"one of, drawn per image: {words[0]}; or {words[2]} (in place of its whole region pasted)"
    assert torch.equal(made[-1][0], members) and torch.equal(made[-1][1], rest)
    recorded = found.recorded
    assert (recorded["proxy_images"], recorded["left_out"], recorded["joined"], recorded["grouped_at"]) == (16, 0, 0, 2)
    assert recorded["groupings"] == [{"grouped_at": 2, "images": 16, "rise": CONFIRMS_BY + 0.2}]
    rises["proxies"] = [0.0, 0.1, 0.19, 0.0]  # none: the region, every rise recorded
    found, shortcut = put_on(whole)
    assert shortcut is whole[PASTES[1]] and found.put_on.startswith(PASTES[1]) and found.recorded["pasted"] == "region"
    assert [p["kept"] for p in found.recorded["proxies"]] == [False, False, False, False]
    assert "proxy_images" not in found.recorded and "grouped_at" not in found.recorded  # recorded only where the proxies are put on
    assert found.recorded["groupings"] == [{"grouped_at": 2, "images": 16, "rise": 0.19}]  # the strongest of all, none put on


def test_the_proxies_are_made_from_the_regrouping_whose_strongest_proxy_raises_the_class_most(data, monkeypatch):
    members, rest = _images(16, 1), _images(16, 2)
    given = torch.arange(32) < 16
    moved = given.clone()
    moved[:2], moved[16] = False, True  # two of the cluster's images nearer the rest, one of the rest's nearer them
    fewer = given.clone()
    fewer[:4] = False
    # layer 2 groups them as given, layer 3 moves three, layer 4 the same three (not tried twice), layer 5 leaves four out
    made = _grouped(monkeypatch, {2: given, 3: moved, 4: moved.clone(), 5: fewer})
    strongest = {16: 0.5, 15: 0.7, 12: 0.6}  # by how many images make the proxies: the one moved at layer 3 the strongest
    texture = {16: 0.0, 15: 0.0, 12: 0.0}  # the texture drawn afresh, never put on here

    def confirmed_by(shortcuts, model, images, at_least, seed=0):
        count = len(shortcuts[0].members)
        return shortcuts[0], [strongest[count], 0.0, 0.0, texture[count]]  # the tone curve alone put on

    def put_on() -> tuple[Found, Shortcut]:
        return repair_put_on.mark_or_proxies(_found(), None, data, 0, pastes=_pastes(members, rest), members=members, rest=rest)

    monkeypatch.setattr("captum_gmar.repair.confirmed_by", confirmed_by)
    found, shortcut = put_on()
    assert [len(inside) for inside, _ in made] == [16, 15, 12]  # at layers 2, 3 and 5
    assert torch.equal(shortcut.members, torch.cat([members[2:], rest[:1]])) and torch.equal(
        shortcut.rest, torch.cat([members[:2], rest[1:]])
    )
    assert shortcut.layer == 3  # the carriers told apart where the images were grouped
    # a texture that rises most but is not put on does not choose the grouping
    texture[12] = 0.99
    assert put_on()[0].recorded["grouped_at"] == 3
    texture[12] = 0.0
    recorded = found.recorded
    assert (recorded["proxy_images"], recorded["left_out"], recorded["joined"], recorded["grouped_at"]) == (15, 2, 1, 3)
    assert recorded["groupings"] == [
        {"grouped_at": 2, "images": 16, "rise": 0.5},
        {"grouped_at": 3, "images": 15, "rise": 0.7},
        {"grouped_at": 5, "images": 12, "rise": 0.6},
    ]
    assert found.put_on.endswith(
        "(in place of its whole region pasted; 2 of the 16 of its images read left out and 1 of the rest's 16 put with them, nearer "
        "the other group in the model's features at layer 3)"
    )
    # equal rises: the first layer's grouping is kept, here the one as given, and no move is said
    strongest.update({15: 0.5, 12: 0.5})
    found, shortcut = put_on()
    assert torch.equal(shortcut.members, members) and found.recorded["grouped_at"] == 2 and shortcut.layer == 2
    assert found.put_on.endswith("(in place of its whole region pasted)")
    # the grouping as given is not among those tried where every layer regroups: a stronger rise there is not read
    made.clear()
    monkeypatch.setattr("captum_gmar.repair.shortcut.regroup_layers", lambda num_layers: (3, 5))
    strongest[16] = 0.9
    found, shortcut = put_on()
    assert [len(inside) for inside, _ in made] == [15, 12] and found.recorded["grouped_at"] == 3
    assert [g["rise"] for g in found.recorded["groupings"]] == [0.5, 0.5]


def test_a_cluster_of_the_features_is_regrouped_at_the_layer_it_was_found_at_as_well(data, monkeypatch):
    members, rest = _images(16, 1), _images(16, 2)
    moved = torch.arange(32) < 16
    moved[0] = False
    made = _grouped(monkeypatch, {1: moved, 2: torch.arange(32) < 16})
    monkeypatch.setattr("captum_gmar.repair.shortcut.regroup_layers", lambda num_layers: (2,))
    rises = {15: 0.6, 16: 0.5}
    monkeypatch.setattr(
        "captum_gmar.repair.confirmed_by",
        lambda shortcuts, model, images, at_least, seed=0: (shortcuts[0], [rises[len(shortcuts[0].members)]] * 4),
    )
    found = dataclasses.replace(_found(), where="no place, found at layer 1", recorded={"layer": 1})
    found, shortcut = repair_put_on.confirming_proxies(found, None, data, 0, members=members, rest=rest)
    assert [len(inside) for inside, _ in made] == [15, 16]  # at the layer it was found at, 1, and at 2
    assert found.recorded["grouped_at"] == 1 == shortcut.layer and found.recorded["left_out"] == 1
    assert found.put_on.endswith("(1 of the 16 of its images read left out, nearer the other group in the model's features at layer 1)")
    assert found.where.startswith("no place, found at layer 1: ")
    # none confirms: refused, with the layers its images were grouped at
    rises.update({15: 0.1, 16: 0.15})
    monkeypatch.setattr(
        "captum_gmar.repair.confirmed_by", lambda shortcuts, model, images, at_least, seed=0: (None, [rises[len(shortcuts[0].members)]] * 4)
    )
    said = r"its images as the model's features group them at layer 2, the strongest of the groupings at layers 1, 2, it rises by \+0\.150 with "
    with pytest.raises(repair_put_on.CommandError, match=said):
        repair_put_on.confirming_proxies(found, None, data, 0, members=members, rest=rest)
    # one grouping: its layer alone; a rise that is no number recorded as none
    monkeypatch.setattr("captum_gmar.repair.shortcut.regroup_layers", lambda num_layers: (2,))
    rises[16] = float("nan")
    one = dataclasses.replace(found, recorded={"layer": 2})
    with pytest.raises(repair_put_on.CommandError, match=r"group them at layer 2, it rises by \+nan with "):
        repair_put_on.confirming_proxies(one, None, data, 0, members=members, rest=rest)
    regrouped, shortcut, _, _ = repair_put_on._regrouped(one, None, members, rest, data.pixels[:4], 0, 2)
    assert shortcut is None and regrouped.recorded["groupings"] == [{"grouped_at": 2, "images": 16, "rise": None}]
