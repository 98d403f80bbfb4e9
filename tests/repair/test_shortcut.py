"""``repair.shortcut``: the ways a shortcut is put on in pixels, made from its images, and
which images go with its own."""

from __future__ import annotations

import pytest
import torch

from captum_gmar.exploration.features import default_layer
from captum_gmar.repair import pixel_proxies, regroup
from captum_gmar.repair.shortcut import regroup_layers
from captum_gmar.vit.layers import pooled_patches
from captum_gmar.vit.model import VisionTransformer


def test_pixel_proxies_are_made_from_the_images_against_the_rest_of_their_class():
    members, rest = (
        torch.rand(16, 3, 64, 64, generator=torch.Generator().manual_seed(1)),
        torch.rand(16, 3, 64, 64, generator=torch.Generator().manual_seed(2)),
    )
    proxies = pixel_proxies(3, members, rest)
    assert [w.split(",")[0] for w in proxies] == [
        "a tone curve per channel",
        "a filter of each channel's spatial frequencies",
        "its images' mean difference from the rest of the class",
        "its images' mean difference and noise of the power their deviations have beyond the rest's",
    ]
    assert all(p.target == 3 and p.members is members and p.rest is rest for p in proxies.values())
    difference, texture = (p.intervention for p in list(proxies.values())[2:])
    torch.testing.assert_close(difference.difference, (members.mean(0) - rest.mean(0))[None])  # the members less the rest
    torch.testing.assert_close(texture.mean, difference.difference)  # the texture's mean: the same difference


def test_regroup_puts_each_image_with_the_group_it_lies_nearer_in_the_models_features(setting):
    model, shortcut, _ = setting
    # a cluster of the three marked images and one of the rest hiding among them; the rest, the other two and a marked one
    members = torch.cat([shortcut.members, shortcut.rest[:1]])
    rest = torch.cat([shortcut.rest[1:], shortcut.members[:1]])
    for layer, expected_layer in ((None, 4), (1, 1)):  # the default layer of 6, or the one given
        near = regroup(model, members, rest, layer)
        vit = VisionTransformer(model)
        features = torch.cat([pooled_patches(vit, members, expected_layer), pooled_patches(vit, rest, expected_layer)])  # as it reads them
        inside, outside = features[:4].mean(0), features[4:].mean(0)  # the means of the groups as given
        assert torch.equal(near, (features - inside).norm(dim=1) < (features - outside).norm(dim=1))
        assert near.dtype == torch.bool and near.shape == (7,)
    assert not torch.equal(regroup(model, members, rest), torch.arange(7) < 4)  # the default layer moves one at least
    # fewer than two left on a side (the marked image of a rest of two joins the members): the grouping as given
    rest = torch.cat([shortcut.rest[1:2], shortcut.members[:1]])
    vit = VisionTransformer(model)
    features = torch.cat([pooled_patches(vit, members, 4), pooled_patches(vit, rest, 4)])
    raw = (features - features[:4].mean(0)).norm(dim=1) < (features - features[4:].mean(0)).norm(dim=1)
    assert int((~raw).sum()) < 2 and torch.equal(regroup(model, members, rest), torch.arange(6) < 4)
    # fewer than two given on a side, none read: the grouping as given
    assert torch.equal(regroup(None, members, rest[:1]), torch.arange(5) < 4)
    assert torch.equal(regroup(None, members[:0], rest), torch.arange(2) < 0)


@pytest.mark.parametrize(("num_layers", "layers"), [(6, (2, 3, 4)), (12, (4, 6, 8)), (24, (8, 12, 16)), (2, (0, 1)), (1, (0,))])
def test_regroup_is_tried_at_a_third_half_and_two_thirds_of_the_way_up_each_once(num_layers, layers):
    assert regroup_layers(num_layers) == layers
    assert default_layer(num_layers) == layers[-1]  # the layer a cluster of the features is found at by default
