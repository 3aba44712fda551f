"""The machine-id classifier's torch parts: model, ArcFace, crops, pseudo-classes, scorers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.covariance import ledoit_wolf as sk_ledoit_wolf
from sklearn.metrics import roc_auc_score

from aad.models.classifier.augment import (
    PseudoClasses,
    crop_starts,
    mix_rms,
    mixup,
    random_crops,
    resample_shift,
    sliding_crops,
    time_stretch,
)
from aad.models.classifier.scoring import (
    KNNScorer,
    MahalanobisScorer,
    class_nll,
    clip_mean,
    id_log_mask,
    ledoit_wolf,
    own_class_nll,
)
from aad.models.classifier.torch_model import (
    ArcFaceHead,
    MachineClassifier,
    arcface_loss,
    recalibrate_batchnorm,
)

SR = 16000


def _peak_hz(x: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(x * torch.hann_window(len(x))).abs()
    return float(spectrum.argmax()) * SR / len(x)


def _tone(freq: float, samples: int, am_hz: float = 0.0) -> torch.Tensor:
    t = torch.arange(samples) / SR
    envelope = 1 + 0.8 * torch.sin(2 * math.pi * am_hz * t) if am_hz else 1.0
    return envelope * torch.sin(2 * math.pi * freq * t)


# ------------------------------------------------------------------------------ model
@pytest.mark.parametrize("waveform_branch", [False, True])
def test_model_shapes(waveform_branch: bool) -> None:
    torch.manual_seed(0)
    model = MachineClassifier(n_mels=32, num_classes=3, embedding_dim=16,
                              channels=(8, 16, 16), waveform_branch=waveform_branch)  # fmt: skip
    crops = torch.randn(5, 8000)
    features = torch.randn(5, 8000 // 512 + 1, 32)
    embedding = model(features, crops if waveform_branch else None)
    assert embedding.shape == (5, 16)
    assert model.logits(embedding).shape == (5, 3)
    assert model.logits(embedding, torch.tensor([0, 1, 2, 0, 1])).shape == (5, 3)
    with pytest.raises(ValueError, match=r"features must be \(batch, frames, 32\)"):
        model(torch.randn(5, 16, 31))
    if waveform_branch:
        with pytest.raises(ValueError, match="forward needs the raw crops"):
            model(features)


def test_model_runs_under_bf16_autocast() -> None:
    model = MachineClassifier(n_mels=32, num_classes=2, embedding_dim=8, channels=(8, 8, 8),
                              waveform_branch=True, win_length=256, hop_length=128)  # fmt: skip
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embedding = model(torch.randn(4, 16, 32), torch.randn(4, 15 * 128))
        loss = arcface_loss(model, embedding, torch.tensor([0, 1, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float32


def test_arcface_margin_lowers_only_the_target_logit() -> None:
    torch.manual_seed(0)
    head = ArcFaceHead(embedding_dim=4, num_classes=3, scale=10.0, margin=0.3)
    embedding = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    plain, with_margin = head(embedding), head(embedding, labels)
    target = torch.nn.functional.one_hot(labels, 3).bool()
    assert torch.all(with_margin[target] < plain[target])
    assert torch.equal(with_margin[~target], plain[~target])
    theta = torch.acos((plain[target] / 10.0).clamp(-1, 1))
    expected = torch.where(theta + 0.3 < math.pi, 10.0 * torch.cos(theta + 0.3),
                           plain[target] - 10.0 * 0.3 * math.sin(0.3))  # fmt: skip
    torch.testing.assert_close(with_margin[target], expected, atol=1e-4, rtol=1e-4)
    no_margin = ArcFaceHead(4, 3, scale=10.0, margin=0.0)
    no_margin.load_state_dict(head.state_dict())
    assert torch.equal(no_margin(embedding, labels), plain)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        head(embedding, torch.tensor([0, 1, 2, 0, 1, 3]))


def test_recalibrate_batchnorm_makes_eval_match_training_statistics() -> None:
    torch.manual_seed(0)
    model = MachineClassifier(n_mels=16, num_classes=2, embedding_dim=8, channels=(8, 8, 8))
    features = 3.0 + 2.0 * torch.randn(64, 12, 16)
    model.eval()
    before = model(features)
    model.train()
    with torch.no_grad():
        in_training_mode = model(features)
    model.eval()
    recalibrate_batchnorm(model, [(features, None)])  # running stats = this batch's stats
    assert not model.training and model.bn.momentum == 0.1
    model.eval()
    after = model(features)
    assert (after - in_training_mode).abs().max() < 0.1 * (before - in_training_mode).abs().max()


def test_mixup_loss_interpolates_the_two_label_losses() -> None:
    torch.manual_seed(0)
    model = MachineClassifier(n_mels=16, num_classes=2, embedding_dim=8, channels=(8, 8, 8))
    embedding = torch.randn(4, 8)
    labels = torch.tensor([0, 0, 1, 1])
    partner = torch.tensor([2, 3, 0, 1])
    ones, zeros = torch.ones(4), torch.zeros(4)
    own = arcface_loss(model, embedding, labels)
    torch.testing.assert_close(arcface_loss(model, embedding, labels, partner, ones), own)
    other = arcface_loss(model, embedding, labels[partner])
    torch.testing.assert_close(arcface_loss(model, embedding, labels, partner, zeros), other)


# ------------------------------------------------------------------------------ crops
@pytest.mark.parametrize("samples,crop,hop", [(16000, 4000, 2000), (17001, 4000, 3000),
                                              (3000, 4000, 2000), (4000, 4000, 1000)])  # fmt: skip
def test_sliding_crops_cover_the_clip(samples: int, crop: int, hop: int) -> None:
    clip = torch.arange(samples, dtype=torch.float32)[None] + 1
    crops = sliding_crops(clip, crop, hop)
    starts = crop_starts(samples, crop, hop)
    assert crops.shape == (1, len(starts), crop)
    covered = torch.zeros(samples, dtype=torch.bool)
    for i, start in enumerate(starts):
        piece = clip[0, start : start + crop]
        assert torch.equal(crops[0, i, : len(piece)], piece)
        covered[start : start + crop] = True
    assert covered.all()
    assert starts[-1] == max(samples - crop, 0)
    assert all(b - a <= hop for a, b in zip(starts, starts[1:], strict=False))


def test_random_crops_are_slices_and_deterministic() -> None:
    clips = torch.arange(2 * 9000, dtype=torch.float32).view(2, 9000)
    first = random_crops(clips, 1000, 5, torch.Generator().manual_seed(3))
    again = random_crops(clips, 1000, 5, torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and first.shape == (2, 5, 1000)
    for row in range(2):
        for crop in first[row]:  # consecutive values of the right clip
            assert torch.equal(crop, clips[row, int(crop[0]) - 9000 * row :][:1000])


def test_mixup_is_a_convex_mix_with_partner() -> None:
    x = torch.randn(6, 3)
    (mixed,), perm, lam = mixup([x], torch.Generator().manual_seed(0))
    torch.testing.assert_close(mixed, lam[:, None] * x + (1 - lam[:, None]) * x[perm])
    assert sorted(perm.tolist()) == list(range(6)) and bool(((lam >= 0) & (lam <= 1)).all())


# ------------------------------------------------------------------------ pseudo-classes
def test_resample_shift_and_time_stretch_do_what_they_say() -> None:
    tone = _tone(1000.0, 24000, am_hz=4.0)[None].repeat(2, 1)
    up = resample_shift(tone, torch.tensor([2 ** (3 / 12), 2 ** (-3 / 12)]), 16000)
    assert _peak_hz(up[0]) == pytest.approx(1000 * 2 ** (3 / 12), abs=3)
    assert _peak_hz(up[1]) == pytest.approx(1000 * 2 ** (-3 / 12), abs=3)
    stretched = time_stretch(tone, torch.tensor([1.25, 0.8]), 16000)
    for row, rate in enumerate([1.25, 0.8]):
        assert _peak_hz(stretched[row]) == pytest.approx(1000, abs=3)  # pitch kept
        envelope = stretched[row].abs().unfold(0, 400, 400).mean(dim=1)  # 25 ms frames
        assert _peak_hz_envelope(envelope, 40.0) == pytest.approx(4.0 * rate, abs=0.4)
    mixed = mix_rms(tone[:1, :16000], _tone(3000.0, 16000)[None], torch.tensor([0.5]))
    torch.testing.assert_close(mixed.square().mean(), tone[:1, :16000].square().mean())
    spectrum = torch.fft.rfft(mixed[0]).abs()  # 1 Hz bins
    assert float(spectrum[3000]) == pytest.approx(0.5 * float(spectrum[1000]), rel=0.05)


def _peak_hz_envelope(envelope: torch.Tensor, rate_hz: float) -> float:
    spectrum = torch.fft.rfft(envelope - envelope.mean()).abs()
    return float(spectrum.argmax()) * rate_hz / len(envelope)


def test_pseudo_classes_deterministic_balanced_and_distinct() -> None:
    clips = torch.stack([_tone(1000.0, 2 * SR, am_hz=4.0), _tone(2500.0, 2 * SR)]) * 0.1
    pseudo = PseudoClasses()
    crops, classes = pseudo(clips, 8000, 8, torch.Generator().manual_seed(0))
    again, again_classes = pseudo(clips, 8000, 8, torch.Generator().manual_seed(0))
    other, _ = pseudo(clips, 8000, 8, torch.Generator().manual_seed(1))
    assert torch.equal(crops, again) and torch.equal(classes, again_classes)
    assert not torch.equal(crops, other)
    assert crops.shape == (2, 8, 8000)
    assert torch.bincount(classes.flatten(), minlength=4).tolist() == [4, 4, 4, 4]
    # same RMS whatever the class: loudness does not give the class away
    rms = crops.square().mean(dim=-1).sqrt()
    reference = rms[classes == 0].view(2, 2).mean(dim=1, keepdim=True).expand_as(rms)
    torch.testing.assert_close(rms, reference, rtol=0.1, atol=0)
    peaks = {c: [_peak_hz(x) for x in crops[0][classes[0] == c]] for c in range(4)}
    assert peaks[0] == pytest.approx([1000, 1000], abs=3)
    assert all(abs(p - 1000) > 50 for p in peaks[1])  # pitch moved by >= 1 semitone
    spectra = {c: torch.fft.rfft(crops[0][classes[0] == c]).abs().mean(0) for c in range(4)}
    bin_2500 = 2500 * 8000 // SR
    assert spectra[3][bin_2500] > 10 * spectra[0][bin_2500]  # the other clip is mixed in


def _best_match(crop: torch.Tensor, clip: torch.Tensor) -> float:
    """Highest normalised correlation of ``crop`` with any slice of ``clip`` (1 = a slice)."""
    n = len(clip)
    dot = torch.fft.irfft(torch.fft.rfft(clip, 2 * n) * torch.fft.rfft(crop, 2 * n).conj(), 2 * n)
    dot = dot[: n - len(crop) + 1]
    energy = torch.cat([torch.zeros(1), clip.double().square().cumsum(0)])
    norms = (energy[len(crop) :] - energy[: n - len(crop) + 1]).sqrt() * crop.norm()
    return float((dot / norms.float()).max())


def test_pseudo_classes_other_than_original_are_not_slices_of_the_clips() -> None:
    clips = torch.randn(2, SR, generator=torch.Generator().manual_seed(0))
    crops, classes = PseudoClasses()(clips, 2000, 8, torch.Generator().manual_seed(0))
    for row in range(2):
        for crop, label in zip(crops[row], classes[row].tolist(), strict=True):
            match = max(_best_match(crop, clip) for clip in clips)
            assert match > 0.999 if label == 0 else match < 0.95, (label, match)


# ------------------------------------------------------------------------------ scorers
def test_class_nll_and_clip_mean() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    nll = class_nll(logits, torch.tensor([0, 0, -1]))
    log_p = torch.log_softmax(logits, dim=1)
    torch.testing.assert_close(nll, -torch.stack([log_p[0, 0], log_p[1, 0], log_p[2, 1]]))
    assert nll[1] > nll[0]  # off-class crop scores higher
    means = clip_mean(torch.tensor([1.0, 3.0, 5.0]), torch.tensor([0, 0, 1]), 2)
    assert means.tolist() == [2.0, 5.0]


def _two_classes(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[3.0, 0, 0, 0], [0, 3.0, 0, 0]])
    classes = torch.tensor([0] * 50 + [1] * 50)
    return centres[classes] + 0.3 * torch.randn(100, 4, generator=g), classes


def test_knn_scores_off_class_higher_and_takes_min_over_domains() -> None:
    train, classes = _two_classes()
    scorer = KNNScorer(k=3).fit(train, classes)
    query = torch.tensor([[3.0, 0, 0, 0], [3.0, 0, 0, 0], [3.0, 0, 0, 0]])
    in_class, off_class, unknown = scorer.score(query, torch.tensor([0, 1, -1])).tolist()
    assert off_class > in_class + 0.5 and unknown == pytest.approx(in_class)
    domains = torch.tensor([0] * 45 + [1] * 5 + [0] * 50)  # class 0 has a small target bank
    target = torch.tensor([[0, 0, 3.0, 0]])
    with_target = torch.cat([train, target.repeat(5, 1) + 0.01 * train[:5]])
    both = KNNScorer(k=3).fit(with_target, torch.cat([classes, torch.zeros(5).long()]),
                              torch.cat([domains, torch.ones(5).long()]))  # fmt: skip
    assert float(both.score(target, torch.tensor([0]))) < 0.01  # near its target-domain bank
    assert float(scorer.score(target, torch.tensor([0]))) > 0.5
    with pytest.raises(ValueError, match=r"classes \[2\] were not fitted"):
        scorer.score(query[:1], torch.tensor([2]))


def test_mahalanobis_scores_shifted_embedding_higher() -> None:
    train, classes = _two_classes(1)
    scorer = MahalanobisScorer().fit(train, classes)
    query = torch.tensor([[3.0, 0, 0, 0], [3.0, 0.9, 0, 0], [3.0, 0, 0, 0]])
    in_class, shifted, off_class = scorer.score(query, torch.tensor([0, 0, 1])).tolist()
    assert in_class < 1.0 < 5.0 < shifted < off_class
    assert scorer.score(query[:1], torch.tensor([-1])).item() == pytest.approx(in_class)
    fixed = MahalanobisScorer(shrinkage=1.0).fit(train, classes)
    assert fixed.shrinkages[0] == 1.0


def test_ledoit_wolf_matches_scikit_learn() -> None:
    rows = np.random.default_rng(0).normal(size=(30, 12)) @ np.diag(np.linspace(0.5, 3, 12))
    centred = rows - rows.mean(axis=0)
    cov, shrinkage = ledoit_wolf(torch.from_numpy(centred))
    sk_cov, sk_shrinkage = sk_ledoit_wolf(centred, assume_centered=True)
    assert shrinkage == pytest.approx(sk_shrinkage, rel=1e-9)
    np.testing.assert_allclose(cov.numpy(), sk_cov, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------- end to end
def test_tiny_fit_separates_synthetic_anomalies(synthetic_root) -> None:
    from aad.data.audio import load_waveform
    from aad.data.readers import read_manifest
    from aad.features import FeatureExtractor, FeatureNormalizer

    manifest = read_manifest(synthetic_root).filter(machine_type="fan")
    train = manifest.filter(split="train", label="normal").records[::2]  # 6 clips per id
    test = manifest.filter(split="test").records
    ids = sorted({r.machine_id for r in train})
    assert len(ids) == 2

    def load(records):
        return torch.stack([load_waveform(r.path, SR, 0, 2 * SR) for r in records])

    train_wave, test_wave = load(train), load(test)
    train_cls = torch.tensor([ids.index(r.machine_id) for r in train])
    test_cls = torch.tensor([ids.index(r.machine_id) for r in test])
    extractor = FeatureExtractor({"features": ["mel"], "mel": {"n_mels": 32}})
    normalizer = FeatureNormalizer(32)
    normalizer.update(extractor(train_wave))
    normalizer.finalize()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = MachineClassifier(32, 2, embedding_dim=16, channels=(8, 16, 16), arcface_scale=16.0,
                              arcface_margin=0.2)  # fmt: skip
    optimiser = torch.optim.AdamW(model.parameters(), 1e-2)
    for _ in range(12):
        crops = random_crops(train_wave, 8000, 4, generator).flatten(0, 1)
        labels = train_cls.repeat_interleave(4)
        loss = arcface_loss(model, model(normalizer(extractor(crops))), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    train_crops = sliding_crops(train_wave, 8000, 4000).flatten(0, 1)
    recalibrate_batchnorm(model, [(normalizer(extractor(train_crops)), None)])
    model.eval()
    with torch.no_grad():
        test_crops = sliding_crops(test_wave, 8000, 4000)
        k = test_crops.shape[1]
        embedding = model(normalizer(extractor(test_crops.flatten(0, 1))))
        nll = class_nll(model.logits(embedding), test_cls.repeat_interleave(k))
        clip_nll = clip_mean(nll, torch.arange(len(test)).repeat_interleave(k), len(test))
        train_emb = model(normalizer(extractor(train_crops)))
        knn = KNNScorer(k=1).fit(train_emb, train_cls.repeat_interleave(k))
        clip_knn = knn.score(embedding.view(len(test), k, -1).mean(1), test_cls)
    labels = np.array([r.target for r in test])
    assert roc_auc_score(labels, clip_nll.numpy()) > 0.6  # 0.646 measured
    assert roc_auc_score(labels, clip_knn.numpy()) > 0.9  # 0.993 measured


def test_own_class_nll_sums_an_ids_classes_and_reads_pseudo_ids_as_recorded() -> None:
    logits = torch.randn(3, 2, 4)  # 3 clips x 2 crops x 4 classes
    prob = torch.softmax(logits, dim=-1)
    classes = torch.tensor([0, 1, -1])
    # attributes: classes 0, 1 are id 0; 2, 3 are id 1 -> p(id) is the sum of its classes
    per_id = torch.stack([prob[..., :2].sum(-1), prob[..., 2:].sum(-1)], dim=-1)
    want = -torch.log(torch.stack([per_id[0, :, 0], per_id[1, :, 1], per_id[2].max(-1).values]))
    got = own_class_nll(logits, classes, id_log_mask(2, [0, 0, 1, 1]))
    torch.testing.assert_close(got, want)
    # pseudo-classes (2 per id): only each id's first class ("as recorded") is read
    pseudo = id_log_mask(2, [0, 0, 1, 1], [True, False, True, False])
    own = -torch.log(prob[..., ::2])
    want = torch.stack([own[0, :, 0], own[1, :, 1], own[2].min(-1).values])
    torch.testing.assert_close(own_class_nll(logits, classes, pseudo), want)
