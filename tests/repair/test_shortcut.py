"""``repair.shortcut``: the ways a shortcut is put on in pixels, made from its images."""

from __future__ import annotations

import torch

from captum_gmar.repair import pixel_proxies


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
