"""Tests of wafer.core.probs: the shared softmax."""

import numpy as np

from wafer.core.probs import softmax


def test_softmax_stable_and_normalised():
    p = softmax(np.array([[1000.0, 1000.0, -1000.0], [0.0, 0.0, 0.0]]))
    assert p.dtype == np.float64
    np.testing.assert_allclose(p, [[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-12)
    np.testing.assert_allclose(softmax(np.array([2.0, 0.0]), temperature=2.0), softmax([1.0, 0.0]))


def test_softmax_keeps_the_argmax_and_a_temperature_flattens():
    z = np.random.default_rng(0).normal(0.0, 3.0, (50, 9))
    p1, p3 = softmax(z), softmax(z, temperature=3.0)
    np.testing.assert_array_equal(p1.argmax(1), z.argmax(1))
    np.testing.assert_array_equal(p3.argmax(1), z.argmax(1))
    assert (p3.max(1) <= p1.max(1) + 1e-12).all()
    np.testing.assert_allclose(p3.sum(1), 1.0, atol=1e-12)
