"""The 1-D two-Gaussian EM must give scikit-learn's GaussianMixture answer: the label detector's
windows and thresholds were measured with that."""
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from trainyard.diagnose.mixture import fit_two_gaussians


@pytest.mark.parametrize("case", range(6))
def test_same_fit_as_scikit_learn(case):
    rng = np.random.default_rng(case)
    n_low = int(rng.integers(50, 1500))
    x = np.r_[rng.normal(-rng.uniform(0, 3), rng.uniform(0.3, 2), n_low),
              rng.normal(rng.uniform(0, 3), rng.uniform(0.3, 2), 3000 - n_low)]
    ref = GaussianMixture(2, n_init=5, random_state=case).fit(x[:, None])
    ours = fit_two_gaussians(x, seed=case)
    o_ref, o = np.argsort(ref.means_[:, 0]), np.argsort(ours.means_[:, 0])
    np.testing.assert_allclose(ours.means_[o], ref.means_[o_ref], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.covariances_[o], ref.covariances_[o_ref], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.weights_[o], ref.weights_[o_ref], rtol=1e-9, atol=1e-12)
    grid = np.linspace(x.min(), x.max(), 50)
    np.testing.assert_allclose(ours.predict_proba(grid)[:, o], ref.predict_proba(grid[:, None])[:, o_ref],
                               atol=1e-9)


def test_planted_groups_recovered_and_degenerate_input():
    x = np.r_[-3.0 + np.linspace(-0.2, 0.2, 200), 2.0 + np.linspace(-0.2, 0.2, 800)]
    gm = fit_two_gaussians(x)
    lo = int(np.argmin(gm.means_[:, 0]))
    assert abs(gm.means_[lo, 0] + 3) < 0.05 and abs(gm.weights_[lo] - 0.2) < 0.01
    assert fit_two_gaussians(np.ones(50)) is None
