"""digits-mixed: the embedded digits, clean and restyled; its construction checked piece by
piece against the definitions in dynconv_np/train/mixed_digits.py."""
import numpy as np
import pytest

from dynconv_np.train import mixed_digits
from dynconv_np.train.data import DATASETS, load_dataset, load_digits
from dynconv_np.train.mixed_digits import STYLES, apply_style, load_mixed_digits


@pytest.fixture(scope="module")
def mixed():
    return load_mixed_digits()


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_every_digit_twice_clean_then_styled(mixed, digits):
    assert (mixed.x_train.shape, mixed.x_test.shape) == ((2694, 1, 8, 8), (900, 1, 8, 8))
    assert mixed.x_train.dtype == np.float32 and mixed.classes == digits.classes
    for x, y, s, base in ((mixed.x_train, mixed.y_train, mixed.style_train, digits.y_train),
                          (mixed.x_test, mixed.y_test, mixed.style_test, digits.y_test)):
        n = len(base)
        np.testing.assert_array_equal(y, np.concatenate([base, base]))
        assert np.all(s[:n] == 0) and set(np.unique(s[n:])) == {1, 2, 3, 4}
        # every style is drawn for a fair share of the styled copies
        assert np.bincount(s[n:], minlength=5)[1:].min() > n / 8


def test_clean_half_is_the_digits_and_standardised_with_training_statistics(mixed, digits):
    n = len(digits.x_train)
    clean = mixed.x_train[:n].astype(np.float64).ravel()
    reference = digits.x_train.astype(np.float64).ravel()
    slope, intercept = np.polyfit(reference, clean, 1)        # one affine map for every pixel
    np.testing.assert_allclose(clean, slope * reference + intercept, atol=1e-5)
    assert abs(mixed.x_train.mean()) < 1e-5 and mixed.x_train.std() == pytest.approx(1, abs=1e-5)
    test_clean = mixed.x_test[:len(digits.x_test)].astype(np.float64).ravel()
    np.testing.assert_allclose(test_clean, slope * digits.x_test.ravel() + intercept, atol=1e-5)


def test_styled_copies_follow_their_definitions(mixed, digits):
    n = len(digits.x_train)
    clean, styled = mixed.x_train[:n].astype(np.float64), mixed.x_train[n:].astype(np.float64)
    # one affine map takes [0, 1] pixels to the standardised ones; the clean training images
    # hold both 0 and 1, so their extremes give it back
    low, high = clean.min(), clean.max()
    unit, styled_unit = (clean - low) / (high - low), (styled - low) / (high - low)
    styles = mixed.style_train[n:]
    for index, name in enumerate(STYLES[1:], start=1):
        chosen = styles == index
        if name == "noisy":
            noise = styled_unit[chosen] - unit[chosen]
            assert noise.std() == pytest.approx(mixed_digits.NOISE_SIGMA, rel=0.1)
            assert abs(noise.mean()) < 0.02
        else:
            np.testing.assert_allclose(styled_unit[chosen], apply_style(unit[chosen], name),
                                       atol=1e-5)


def test_style_filters_match_scipy():
    from scipy import ndimage  # a core dependency: its absence is an error, not a skip
    x = np.random.default_rng(0).random((3, 1, 8, 8))
    np.testing.assert_allclose(apply_style(x, "bold"),
                               ndimage.grey_dilation(x, size=(1, 1, 2, 2)), atol=1e-12)
    np.testing.assert_allclose(apply_style(x, "blurred"),
                               ndimage.gaussian_filter(x, (0, 0, 0.8, 0.8)), atol=1e-12)
    np.testing.assert_allclose(apply_style(x, "inverted"), 1 - x)
    np.testing.assert_array_equal(apply_style(x, "clean"), x)


def test_registered_by_name_and_seeded(mixed):
    assert "digits-mixed" in DATASETS
    by_name = load_dataset("digits-mixed", dtype=np.float64)
    assert by_name.name == "digits-mixed" and by_name.x_train.dtype == np.float64
    np.testing.assert_allclose(by_name.x_train, mixed.x_train, atol=1e-6)
    other = load_mixed_digits(seed=1)
    assert not np.array_equal(other.style_train, mixed.style_train)
    np.testing.assert_array_equal(load_mixed_digits(seed=0).x_test, mixed.x_test)


def test_bad_arguments():
    with pytest.raises(ValueError, match="style must be one of"):
        apply_style(np.zeros((1, 1, 8, 8)), "sepia")
    with pytest.raises(TypeError, match="seed"):
        load_mixed_digits(seed=-1)
