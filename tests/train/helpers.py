"""Small pieces shared by the training tests: a digits subset and a model-plus-loss wrapper."""
import numpy as np

from dynconv_np.train.data import Dataset, load_digits
from dynconv_np.train.losses import cross_entropy_backward, cross_entropy_forward


def digits_subset(n_train=192, n_test=96, dtype=np.float32):
    """The first images of the embedded digits' fixed split (keeps training tests short)."""
    data = load_digits(dtype=dtype)
    return Dataset("digits", data.x_train[:n_train], data.y_train[:n_train],
                   data.x_test[:n_test], data.y_test[:n_test], data.classes)


class ModelWithLoss:
    """x -> mean cross-entropy of model(x) against fixed labels, as a layer ``gradcheck`` takes:
    forward returns the scalar loss (a 0-d array), backward maps dloss to dx, and the parameters
    are the model's own (``named_parameters``)."""

    def __init__(self, model, labels):
        self.model, self.labels = model, labels
        self.params, self.grads = {}, {}

    def named_parameters(self):
        return self.model.named_parameters()

    def forward(self, x):
        loss, self.cache = cross_entropy_forward(self.model.forward(x), self.labels)
        return np.array(loss)

    def backward(self, dloss):
        return self.model.backward(cross_entropy_backward(float(dloss), self.cache))

    def clear_calls(self):
        """gradcheck forgets its probes' forward calls through this (they have no backward)."""
        self.model.clear_calls()
