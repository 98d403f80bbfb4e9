"""A toy data set of explanation tasks, shared by the comparison's tests."""

from __future__ import annotations

import weakref

import torch
from torch.utils.data import Dataset


class ToyTasks(Dataset):
    """``n`` seeded random 32 px images of 3 classes; a mask on items 0, 1, 2 mod 4 (not 3),
    an other object's mask on even items. Counts reads and the pixel tensors alive."""

    def __init__(self, n: int, fail_at: int | None = None, unreadable: tuple[int, ...] = ()) -> None:
        self.n, self.fail_at, self.unreadable = n, fail_at, unreadable
        self.fingerprint = f"toy-{n}"
        self.reads, self.alive, self.most_alive = 0, 0, 0

    def __len__(self) -> int:
        return self.n

    def _released(self) -> None:
        self.alive -= 1

    def __getitem__(self, i: int) -> dict:
        if i == self.fail_at:
            raise RuntimeError(f"crash at item {i}")
        self.reads += 1
        if i in self.unreadable:  # as ImageFolderTasks(skip_unreadable=True) gives it
            return {"unreadable": f"cannot read image 'toy{i}'", "name": f"toy{i}"}
        pixel_values = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(i))
        self.alive += 1
        self.most_alive = max(self.most_alive, self.alive)
        weakref.finalize(pixel_values, self._released)
        mask = torch.zeros(32, 32, dtype=torch.bool)
        mask[i % 3 * 8 : i % 3 * 8 + 12, 4:20] = True
        other = torch.zeros(32, 32, dtype=torch.bool)
        other[24:, 24:] = True
        return {
            "pixel_values": pixel_values,
            "label": i % 3,
            "mask": mask if i % 4 != 3 else None,
            "other_mask": other if i % 2 == 0 else None,
            "name": f"toy{i}",
        }
