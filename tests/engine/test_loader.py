"""Training data order: sharding by global batch, resuming mid-epoch, per-sample augmentation seeds."""

from __future__ import annotations

import torch

from ccnet.engine.loader import ResumableSampler, SeededDataset


def _batches(sampler: ResumableSampler) -> list[list[int]]:
    indices = [index for index, _ in sampler]
    return [indices[i : i + sampler.batch_size] for i in range(0, len(indices), sampler.batch_size)]


def test_ranks_share_out_the_single_process_global_batches():
    single = _batches(ResumableSampler(50, 8, seed=3))
    ranks = [_batches(ResumableSampler(50, 4, rank=r, world_size=2, seed=3)) for r in (0, 1)]
    assert len(single) == 50 // 8  # incomplete global batches are dropped
    for step, batch in enumerate(single):
        assert batch == ranks[0][step] + ranks[1][step]


def test_epochs_reshuffle_and_resume_mid_epoch():
    sampler = ResumableSampler(40, 4, seed=0)
    first = _batches(sampler)
    sampler.set_position(1, 0)
    second = _batches(sampler)
    assert first != second
    assert sorted(i for batch in first for i in batch) == sorted(i for batch in second for i in batch)
    sampler.set_position(0, 7)
    assert _batches(sampler) == first[7:]
    sampler.set_position(0, 10)  # a finished epoch rolls over to the next one
    assert (sampler.epoch, sampler.start_batch) == (1, 0)


def test_seeded_dataset_augments_by_sample_seed_only():
    class Noise(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            return torch.rand(2) + index

    dataset = SeededDataset(Noise())
    torch.manual_seed(0)
    before = torch.rand(())
    torch.manual_seed(0)
    a = dataset[(1, 123)]
    assert torch.rand(()) == before  # the global generator is left as it was
    assert torch.equal(a, dataset[(1, 123)]) and not torch.equal(a, dataset[(1, 124)])
