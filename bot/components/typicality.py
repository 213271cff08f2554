"""How typical a message is of the training data: Mahalanobis distance to the nearest intent.

Each intent is summarised by the mean of its examples' dense sentence features, and all
intents share one covariance (Lee et al. 2018, "A simple unified framework for detecting
out-of-distribution samples"; Podolskiy et al. 2021 found it strong for out-of-scope
intents on CLINC150). A message's distance is the smallest over the intents. The
reference is a quantile of the training examples' own distances; a message beyond it has
its confidences shrunk by ``confidence_factor``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Typicality:
    """The fitted measure: intent means [intents, dims], shared precision [dims, dims],
    and the reference distance."""

    means: np.ndarray
    precision: np.ndarray
    reference: float

    @functools.cached_property
    def _terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The precision, P·means^T and each mean's own term in float64, once: per
        message they cost ~1 ms (a [intents, dims] x [dims, dims] product) against the
        ~0.1 ms that is left."""
        return _terms(self.means, self.precision)

    def distances(self, rows: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row to the nearest intent mean."""
        return _distances(np.asarray(rows, np.float64), *self._terms).min(axis=1)

    def confidence_factor(self, rows: np.ndarray, penalty: float) -> np.ndarray:
        """1 for rows within the reference distance, ``exp(-penalty * (d / ref - 1))``
        beyond it."""
        excess = np.maximum(self.distances(rows) / self.reference - 1.0, 0.0)
        return np.asarray(np.exp(-penalty * excess))


def _terms(means: np.ndarray, precision: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    precision = np.asarray(precision, np.float64)
    to_means = precision @ np.asarray(means, np.float64).T
    return precision, to_means, np.einsum("dk,kd->k", to_means, np.asarray(means, np.float64))


def _distances(
    rows: np.ndarray, precision: np.ndarray, to_means: np.ndarray, mean_terms: np.ndarray
) -> np.ndarray:
    """Squared distance of every row to every mean, [rows, means], as x'Px - 2x'Pm + m'Pm:
    without forming the [rows, means, dims] differences (CLINC150's training set would
    need 7 GB)."""
    own = np.einsum("nd,nd->n", rows @ precision, rows)
    return np.maximum(own[:, None] - 2 * rows @ to_means + mean_terms[None, :], 0.0)


def fit_typicality(
    rows: np.ndarray, labels: list[str], classes: list[str], quantile: float
) -> Typicality:
    """Fit intent means, a shared covariance and the reference distance on training rows.

    The covariance gets a ridge of its average variance: with fewer examples than
    dimensions (a small bot has a few hundred against 384) it would not be invertible,
    and the ridge keeps the measure close to a scaled Euclidean distance there. Each
    training example's distance is measured as if the measure had been fitted without
    it (left-one-out), so the reference is what an unseen message of a known intent
    would get, not the optimistic in-sample distance.
    """
    rows = np.asarray(rows, np.float64)
    position = {name: number for number, name in enumerate(classes)}
    index = np.array([position[label] for label in labels])
    counts = np.bincount(index, minlength=len(classes)).astype(np.float64)
    means = np.zeros((len(classes), rows.shape[1]))
    np.add.at(means, index, rows)
    means /= np.maximum(counts, 1)[:, None]
    residuals = rows - means[index]
    total = len(rows)
    covariance = residuals.T @ residuals / total
    ridge = float(np.trace(covariance)) / covariance.shape[0] or 1.0
    precision = np.linalg.inv(covariance + ridge * np.eye(covariance.shape[0]))
    reference = float(
        np.quantile(_left_one_out(rows, residuals, index, counts, means, precision), quantile)
    )
    return Typicality(means.astype(np.float32), precision.astype(np.float32), max(reference, 1e-12))


def _left_one_out(
    rows: np.ndarray,
    residuals: np.ndarray,
    index: np.ndarray,
    counts: np.ndarray,
    means: np.ndarray,
    precision: np.ndarray,
) -> np.ndarray:
    """Each training row's distance to the nearest mean as if it had not been trained on.

    An example pulls the covariance towards itself as well as its intent's mean; with
    about as many examples as dimensions (a small bot), its in-sample distance is a
    fraction of what an unseen message of the same intent gets. Without row i the
    covariance loses r r^T / n (r its residual, n all rows), so by Sherman-Morrison its
    distance to a mean m grows by ((x - m)^T P r)^2 / (n - h), h = r^T P r; without it,
    its own intent's mean moves away by 1/(k-1) of r (k that intent's examples).
    """
    total = len(rows)
    to_means = _distances(rows, *_terms(means, precision))
    projected = residuals @ precision
    leverage = np.einsum("nd,nd->n", projected, residuals)
    # (x_i - m_j)^T P r_i for every row i and mean j
    cross = np.einsum("nd,nd->n", rows, projected)[:, None] - projected @ means.T
    to_means += cross**2 / np.maximum(total - leverage, 1e-12)[:, None]
    own = np.arange(total), index
    k = counts[index]
    # A lone example has no mean without it: only the other intents count.
    to_means[own] = np.where(k > 1, to_means[own] * (k / np.maximum(k - 1, 1)) ** 2, np.inf)
    return np.asarray(to_means.min(axis=1))
