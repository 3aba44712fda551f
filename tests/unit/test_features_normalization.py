"""FeatureNormalizer: streaming fit equals numpy, guards constants, survives state_dict."""

import numpy as np
import pytest
import torch

from aad.features import FeatureNormalizer


def _batches(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(b, 7, 5, generator=generator) * torch.tensor([1.0, 10.0, 0.1, 3.0, 1.0])
        + torch.tensor([0.0, -80.0, 5.0, 1e3, 2.0])
        for b in (3, 1, 8)
    ]


def test_streaming_fit_equals_numpy() -> None:
    batches = _batches()
    norm = FeatureNormalizer(5)
    for batch in batches:
        norm.update(batch)
    norm.finalize()
    stacked = torch.cat([b.reshape(-1, 5) for b in batches]).double().numpy()
    np.testing.assert_allclose(norm.mean.numpy(), stacked.mean(0), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(norm.std.numpy(), stacked.std(0), rtol=1e-5)
    assert int(norm.count) == stacked.shape[0]
    out = norm(batches[0])
    expected = (batches[0].double().numpy() - stacked.mean(0)) / stacked.std(0)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_constant_features_get_unit_std() -> None:
    norm = FeatureNormalizer(3)
    x = torch.zeros(4, 10, 3)
    x[..., 1] = -100.0
    x[..., 2] = torch.randn(4, 10)
    norm.update(x)
    norm.finalize()
    assert norm.std[0] == 1 and norm.std[1] == 1 and norm.std[2] != 1
    out = norm(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[..., 1], torch.zeros(4, 10))


def test_state_dict_round_trip() -> None:
    norm = FeatureNormalizer(5)
    for batch in _batches():
        norm.update(batch)
    norm.finalize()
    state = norm.state_dict()
    assert set(state) == {"mean", "std", "count"}
    restored = FeatureNormalizer(5)
    restored.load_state_dict(state)
    assert restored.fitted
    x = _batches(seed=1)[0]
    torch.testing.assert_close(restored(x), norm(x))


def test_misuse_raises() -> None:
    norm = FeatureNormalizer(5)
    with pytest.raises(RuntimeError, match="finalize"):
        norm(torch.zeros(1, 2, 5))
    with pytest.raises(RuntimeError, match="update"):
        norm.finalize()
    with pytest.raises(ValueError, match="last dim 5"):
        norm.update(torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="NaN"):
        norm.update(torch.full((1, 2, 5), float("nan")))


def test_summed_moments_from_two_shards_equal_one_pass() -> None:
    """What DDP ranks all-reduce (count, sum, sum of squares) gives the one-process fit."""
    torch.manual_seed(0)
    data = torch.randn(2, 50, 7) * 3 + 5
    whole = FeatureNormalizer(7)
    whole.update(data)
    whole.finalize()
    shards = [FeatureNormalizer(7), FeatureNormalizer(7)]
    for shard, part in zip(shards, data, strict=True):
        shard.update(part)
    summed = [sum(parts) for parts in zip(*(s.sums() for s in shards), strict=True)]
    merged = FeatureNormalizer(7)
    merged.finalize_from_sums(*summed)
    assert int(merged.count) == 100
    torch.testing.assert_close(merged.mean, whole.mean)
    torch.testing.assert_close(merged.std, whole.std)
