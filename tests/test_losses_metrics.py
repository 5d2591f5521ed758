import jax
import jax.numpy as jnp
import numpy as np
import pytest

from serjax.errors import SerjaxError
from serjax.losses import class_weights, focal_loss
from serjax.metrics import confusion_matrix, scores

LOGITS = np.array(
    [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0], [0.0, 0.0, 4.0]], np.float32
)
LABELS = np.array([0, 2, 1, 0])


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_focal_loss_by_hand():
    weights = np.array([0.5, 1.0, 2.0], np.float32)
    p = softmax(LOGITS.astype(np.float64))[np.arange(4), LABELS]
    expected = -weights[LABELS] * (1 - p) ** 2 * np.log(p)
    got = focal_loss(jnp.asarray(LOGITS), jnp.asarray(LABELS), jnp.asarray(weights), 2.0)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_gamma_zero_equal_weights_is_cross_entropy():
    p = softmax(LOGITS.astype(np.float64))[np.arange(4), LABELS]
    got = focal_loss(jnp.asarray(LOGITS), jnp.asarray(LABELS), jnp.ones(3), 0.0)
    np.testing.assert_allclose(got, -np.log(p), rtol=1e-5)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_focal_gradient_is_finite_when_a_sample_is_certain(gamma):
    # p_y rounds to 1 at a logit margin of 20: (1 - p)^γ has an infinite slope at 0 for γ < 1
    logits = jnp.array([[20.0, 0.0], [0.3, 0.1]])
    grad = jax.grad(lambda z: focal_loss(z, jnp.array([0, 1]), jnp.ones(2), gamma).sum())(logits)
    assert np.all(np.isfinite(grad)) and np.abs(np.asarray(grad[0])).max() < 1e-6
    with pytest.raises(SerjaxError, match="train.focal_gamma"):
        focal_loss(logits, jnp.array([0, 1]), jnp.ones(2), -1.0)


def test_class_weights_inverse_frequency_mean_one():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    w = class_weights(labels, 3)
    np.testing.assert_allclose(w, [10 / 18, 10 / 9, 10 / 3], rtol=1e-6)
    assert w[labels].mean() == pytest.approx(1.0)
    np.testing.assert_array_equal(class_weights(labels, 3, "none"), [1, 1, 1])
    with pytest.raises(SerjaxError, match="class"):
        class_weights(np.array([0, 0, 1]), 3)
    with pytest.raises(SerjaxError, match="train.class_weighting"):
        class_weights(labels, 3, "sqrt")


def test_scores_on_hand_made_predictions():
    labels = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    preds = [0, 0, 0, 1, 1, 2, 2, 2, 0, 2]
    m = scores(labels, preds, 4)  # class 3 absent everywhere: ignored
    assert m["confusion"][0] == [3, 1, 0, 0] and m["confusion"][2] == [1, 0, 3, 0]
    assert m["wa"] == pytest.approx(7 / 10)
    assert m["ua"] == pytest.approx((3 / 4 + 1 / 2 + 3 / 4) / 3)
    assert m["acc"] == pytest.approx((m["ua"] + m["wa"]) / 2)
    f1 = [2 * 3 / (4 + 4), 2 * 1 / (2 + 2), 2 * 3 / (4 + 4)]
    assert m["f1"] == pytest.approx(np.mean(f1))
    assert confusion_matrix([1], [3], 4).sum() == 1
    # a class predicted but absent from the labels counts in macro-F1 (with F1 0), not in UA
    m = scores([0, 0, 1, 1], [0, 2, 1, 1], 4)
    assert m["f1"] == pytest.approx((2 / 3 + 1 + 0) / 3) and m["ua"] == pytest.approx(
        (1 / 2 + 1) / 2
    )
