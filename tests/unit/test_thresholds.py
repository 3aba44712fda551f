"""Decision thresholds from normal training scores."""

import numpy as np
import pytest
import scipy.stats

from aad.thresholds import decide, fit_threshold


def test_gamma_threshold_matches_dcase_baseline_recipe():
    scores = scipy.stats.gamma.rvs(3.0, loc=0.5, scale=0.2, size=2000, random_state=0)
    shape, loc, scale = scipy.stats.gamma.fit(scores)
    expected = scipy.stats.gamma.ppf(0.9, shape, loc=loc, scale=scale)
    assert fit_threshold(scores) == pytest.approx(expected)
    # about 10 % of the normal scores lie above the 0.9 quantile
    assert 0.07 < np.mean(scores > fit_threshold(scores)) < 0.13


def test_percentile_threshold():
    assert fit_threshold(np.arange(1, 101), method="percentile", quantile=0.5) == 50.5


def test_constant_scores_fall_back_to_the_value():
    assert fit_threshold([2.0, 2.0, 2.0, 2.0]) == 2.0


@pytest.mark.parametrize(
    ("scores", "kwargs", "message"),
    [
        ([], {}, "no normal training scores"),
        ([1.0, float("nan")], {}, "1 of 2 normal training scores are NaN"),
        ([1.0, 2.0], {"method": "mean_std"}, "threshold_method must be one of"),
        ([1.0, 2.0], {"quantile": 1.5}, r"quantile must be in \(0, 1\)"),
    ],
)
def test_bad_input(scores, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_threshold(scores, **kwargs)


def test_decide():
    assert decide(np.array([0.1, 0.5, 0.9]), 0.5).tolist() == [0, 0, 1]
    assert decide(np.array([0.1, 0.9]), float("nan")).tolist() == [0, 0]
