"""The Python API and test.py's full-resolution path: exact sizes, tiles, errors (models/translator.py, tiling.py)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT
from models import create_model, load_translator
from models.networks.generators import build_generator
from models.tiling import TileError, TileGrid, blend_weights, image_wide_norms, receptive_field
from models.translator import InferenceMemoryError, Translator, pad_to_multiple
from options.test_options import TestOptions

# test.py by path: `import test` could find the standard library's test package.
_spec = importlib.util.spec_from_file_location("coopinit_test_script", ROOT / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4 / (a - b).pow(2).mean()))


def smooth_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(1, 3, H, W) in [-1, 1] with structure at several scales."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.nn.functional.interpolate(torch.rand(1, 3, height // 16 + 2, width // 16 + 2, generator=gen) * 2 - 1,
                                             size=(height, width), mode="bilinear")
    return (0.7 * coarse + 0.3 * (torch.rand(1, 3, height, width, generator=gen) * 2 - 1)).clamp(-1, 1)


def random_translator(*extra: str, ngf: int = 8, netG: str = "resnet_4blocks", **kwargs) -> Translator:
    """An untrained generator (seeded) behind a Translator: tiling maths does not depend on training."""
    torch.manual_seed(0)
    opt = TestOptions().parse(["--gpu_ids", "-1", "--ngf", str(ngf), "--netG", netG, *extra])
    model = create_model(opt, torch.device("cpu"))
    model.prepare_inference()
    return Translator(model, **kwargs)


# -- exact size -------------------------------------------------------------------------------
def test_test_py_preprocess_none_writes_the_input_size(tiny_trained_run, tmp_path):
    checkpoints, name = tiny_trained_run
    folder = tmp_path / "photos" / "testA"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)).save(folder / "odd.png")
    Image.fromarray(rng.integers(0, 256, (64, 50, 3), dtype=np.uint8)).save(folder / "even.png")
    assert test_script.main(["--dataroot", str(tmp_path / "photos"), "--checkpoints_dir", str(checkpoints),
                             "--name", name, "--results_dir", str(tmp_path / "results"), "--preprocess", "none",
                             "--num_threads", "0", "--gpu_ids", "-1"]) == 0
    fake = tmp_path / "results" / name / "test_latest" / "images" / "fake_B"
    assert Image.open(fake / "odd.png").size == (45, 37)
    assert Image.open(fake / "even.png").size == (50, 64)


def test_api_translates_pil_numpy_tensors_and_lists_at_their_size(tiny_trained_run):
    checkpoints, name = tiny_trained_run
    translate = load_translator(checkpoints / name, device="cpu")
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (37, 45, 3), dtype=np.uint8))
    out = translate(image)
    assert isinstance(out, Image.Image) and out.size == (45, 37) and out.mode == "RGB"
    pixels = translate(np.asarray(image))
    assert pixels.dtype == np.uint8 and pixels.shape == (37, 45, 3)
    assert np.array_equal(pixels, np.asarray(out))  # one code path
    single = smooth_image(37, 45)[0]
    assert translate(single).shape == (3, 37, 45)
    batch = torch.cat([smooth_image(40, 48, seed) for seed in range(3)])
    result = translate(batch)
    assert result.shape == (3, 3, 40, 48) and result.dtype == torch.float32
    assert result.min() >= -1 and result.max() <= 1
    assert torch.allclose(result[1], translate(batch[1]), atol=1e-5)  # batching does not change an image
    assert [o.size for o in translate([image, image.resize((20, 30))])] == [(45, 37), (20, 30)]
    gray = translate(image.convert("L"))  # converted to the generator's 3 channels
    assert gray.size == (45, 37)


def test_api_loads_a_reference_cut_run():
    """A run of the reference CUT code (train_opt.txt, its weight format) loads and matches its output."""
    fixture = ROOT / "tests" / "fixtures" / "reference_cut"
    translate = load_translator(fixture / "checkpoints" / "ref_cut", device="cpu")
    images = torch.from_numpy(np.load(fixture / "input_0000.npy"))
    assert np.abs(translate(images).numpy() - np.load(fixture / "expected_G_0000.npy")).max() <= 1e-5


def test_sides_already_multiples_are_translated_as_the_generator_does(tiny_trained_run):
    checkpoints, name = tiny_trained_run
    translate = load_translator(checkpoints / name, device="cpu")
    images = smooth_image(32, 48)
    assert torch.equal(translate(images), translate.model.translate(images))


def test_padding_goes_bottom_right_and_cropping_gives_the_size_back():
    images = smooth_image(37, 45)
    padded = pad_to_multiple(images, 4)
    assert padded.shape[-2:] == (40, 48)
    assert torch.equal(padded[..., :37, :45], images)
    assert torch.equal(pad_to_multiple(padded, 4), padded)
    translate = random_translator()
    assert translate._padded(padded) is padded  # no copy of a large image that needs no padding
    assert torch.equal(translate._padded(images), pad_to_multiple(images, 4, translate.pad_mode))


def test_api_errors_name_the_problem(tiny_trained_run, tmp_path):
    checkpoints, name = tiny_trained_run
    translate = load_translator(checkpoints / name, device="cpu")
    with pytest.raises(ValueError, match=r"values must lie in \[-1, 1\]"):
        translate(torch.rand(1, 3, 32, 32) * 255)
    with pytest.raises(ValueError, match="3-channel"):
        translate(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="at least 8 px"):
        translate(torch.zeros(1, 3, 5, 32))
    with pytest.raises(TypeError, match="PIL image"):
        translate("horse.jpg")
    with pytest.raises(TypeError, match="uint8"):
        translate(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(FileNotFoundError, match="no train_opt.json or train_opt.txt"):
        load_translator(tmp_path / "nothing")


# -- tiling -----------------------------------------------------------------------------------
def test_receptive_field_matches_the_gradient_support_of_output_pixels():
    """The analytic window against the input pixels that one output pixel's gradient reaches (no
    norms, whose statistics reach everywhere), at the four phases of the stride-4 grid."""
    torch.manual_seed(0)
    for net, expected in (("resnet_4blocks", 101), ("resnet_9blocks", 181)):
        generator = build_generator(net=net, input_nc=3, output_nc=3, ngf=4, norm="none", dropout=False,
                                    antialias=True, antialias_up=True, init_type="normal", init_gain=0.02).double()
        assert receptive_field(generator) == expected
        widths = []
        for position in (128, 129, 130, 131):
            x = torch.rand(1, 3, 256, 256, dtype=torch.float64, requires_grad=True)
            generator(x)[0, :, position, position].sum().backward()
            columns = (x.grad.abs().sum(dim=(0, 1, 2)) > 0).nonzero().flatten()
            widths.append(int(columns.max() - columns.min()) + 1)
        assert expected - 2 <= min(widths) and max(widths) <= expected + 2, widths


def test_blend_weights_sum_to_one_and_drop_the_tile_edges():
    grid = TileGrid(height=500, width=500, tile=200, overlap=64, multiple=4)
    starts = grid.origins(500)
    assert starts[0] == 0 and starts[-1] == 300 and all(s % 4 == 0 for s in starts)
    weights = blend_weights(starts, 200)
    total = torch.zeros(500, dtype=torch.float64)
    for start, weight in zip(starts, weights):
        total[start:start + 200] += weight
    assert torch.allclose(total, torch.ones(500, dtype=torch.float64))
    assert weights[1][:16].abs().max() == 0 and weights[0][-16:].abs().max() == 0  # outer quarter of the overlap
    owned = grid.owned(500)
    assert owned[0][0] == 0 and owned[-1][1] == 500
    assert all(a[1] == b[0] and a[1] % 4 == 0 for a, b in zip(owned, owned[1:]))  # a partition on the grid


def test_tiled_translation_matches_the_untiled_one():
    translate = random_translator()
    image = smooth_image(300, 260)
    untiled = translate(image)
    translate.tile = translate.check_tile(128)
    tiled = translate(image)
    assert tiled.shape == untiled.shape
    assert psnr(tiled, untiled) > 40


@pytest.mark.slow  # bfloat16 is emulated on CPUs without AVX512-BF16: minutes
def test_tiled_translation_with_bfloat16_weights():
    translate = random_translator("--amp", ngf=4)
    image = smooth_image(136, 124)
    untiled = translate(image)
    translate.tile = translate.check_tile(108)
    tiled = translate(image)
    assert tiled.dtype == torch.float32
    assert psnr(tiled, untiled) > 40


def test_tiles_normalising_themselves_would_not_match():
    """The reason for image-wide statistics: the same tiles with per-tile instance norm differ."""
    from models.tiling import blend_tiles
    translate = random_translator()
    image = smooth_image(300, 260)
    untiled = translate(image)
    grid = TileGrid(height=300, width=260, tile=128, overlap=translate.tile_overlap, multiple=4)
    with torch.inference_mode():
        per_tile = blend_tiles(translate.model.translate, image, grid=grid)
    translate.tile = translate.check_tile(128)
    assert psnr(per_tile, untiled) + 10 < psnr(translate(image), untiled)


def test_image_wide_norms_are_swapped_back():
    translate = random_translator()
    norms_before = [type(m) for m in translate.model.netG.modules()]
    with image_wide_norms(translate.model.netG) as norms:
        assert len(norms) == 13  # 3 before the 4 blocks, 2 per block, 2 after
    assert [type(m) for m in translate.model.netG.modules()] == norms_before


@pytest.mark.slow
def test_2k_image_tiled_matches_untiled():
    translate = random_translator(ngf=4)
    image = smooth_image(2048, 2048, seed=3)
    untiled = translate(image)
    translate.tile = translate.check_tile(512)
    tiled = translate(image)
    assert tiled.shape == (1, 3, 2048, 2048)
    assert psnr(tiled, untiled) > 40


def test_tile_errors(tiny_trained_run, toy_dataroot, tmp_path, capsys):
    translate = random_translator()
    with pytest.raises(TileError, match="--tile 64 is smaller than the generator's receptive field"):
        translate.check_tile(64)
    translate.tile_overlap = 30
    with pytest.raises(TileError, match="--tile_overlap 30 must be a multiple of 4"):
        translate.check_tile(256)
    checkpoints, name = tiny_trained_run
    assert test_script.main(["--dataroot", str(toy_dataroot), "--checkpoints_dir", str(checkpoints), "--name", name,
                             "--results_dir", str(tmp_path), "--tile", "40", "--num_threads", "0",
                             "--gpu_ids", "-1"]) == 2
    assert "--tile 40 is smaller than the generator's receptive field" in capsys.readouterr().err


def test_out_of_memory_suggests_tiles(monkeypatch):
    translate = random_translator()

    def out_of_memory(images):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
    monkeypatch.setattr(translate.model, "translate", out_of_memory)
    with pytest.raises(InferenceMemoryError, match=r"out of memory .* --tile \d+"):
        translate(smooth_image(64, 64))


def test_an_image_that_would_not_fit_is_tiled_by_itself(monkeypatch):
    translate = random_translator()
    image = smooth_image(300, 260)
    untiled = translate(image)
    monkeypatch.setattr(translate, "_free_memory", lambda: 300 * 128 * 8 * 40)  # room for ~128x128 px untiled
    calls = []
    monkeypatch.setattr(translate, "_tiled", lambda image, tile: calls.append(tile) or Translator._tiled(translate, image, tile))
    tiled = translate(image)
    assert calls and calls[0] < 260
    assert psnr(tiled, untiled) > 40
