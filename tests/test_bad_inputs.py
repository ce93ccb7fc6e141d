"""Bad input: each case is a clear error naming the file or flag and the fix, a conversion, or a
logged skip -- never a traceback from deep inside a data-loader worker (docs/bad_inputs.md)."""
from __future__ import annotations

import importlib.util
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import train
from conftest import as_argv
from data import create_dataset
from data.image_folder import DatasetError, check_images, list_images, load_image
from options.train_options import TrainOptions

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("coopinit_test_script", ROOT / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)


def write_rgb(folder: Path, count: int, *, size: int = 32, prefix: str = "") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(prefix) + count)
    paths = [folder / f"{prefix}{i:02d}.png" for i in range(count)]
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return paths


def jpeg_bytes(size: int = 32) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def train_error(argv: list[str], capsys) -> tuple[int, str]:
    code = train.main(argv)
    return code, capsys.readouterr().err


# -- folders -------------------------------------------------------------------------------------

def test_missing_dataroot_domain_folder_or_images_are_named_before_any_work(tiny_train_args, tmp_path,
                                                                             capsys):
    root = tmp_path / "data"
    code, err = train_error(tiny_train_args(dataroot=root), capsys)
    assert code == 2 and f"error: --dataroot {root} does not exist" in err

    root.write_text("a file, not a dataset")
    code, err = train_error(tiny_train_args(dataroot=root), capsys)
    assert code == 2 and f"error: --dataroot {root} is a file, not a folder; make a dataset" in err
    root.unlink()

    write_rgb(root / "trainA", 2)
    code, err = train_error(tiny_train_args(dataroot=root), capsys)
    assert code == 2 and f"image folder not found: {root / 'trainB'} -- check --dataroot" in err

    (root / "trainB").mkdir()
    (root / "trainB" / "readme.txt").write_text("images go here")
    code, err = train_error(tiny_train_args(dataroot=root), capsys)
    assert code == 2 and f"no images in {root / 'trainB'}" in err
    assert not (tmp_path / "checkpoints" / "tiny").exists()  # nothing written for a run that cannot start


def test_files_without_an_image_extension_are_skipped_with_one_log_line(tmp_path, caplog):
    write_rgb(tmp_path / "A", 2)
    for name in ("notes.txt", ".DS_Store", "Thumbs.db"):
        (tmp_path / "A" / name).write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING, logger="data.image_folder"):
        paths = list_images(tmp_path / "A")
    assert [p.name for p in paths] == ["00.png", "01.png"]
    [record] = caplog.records
    assert "skipped 3 file(s) without an image extension" in record.getMessage()
    assert str(tmp_path / "A") in record.getMessage()


# -- files ---------------------------------------------------------------------------------------

def test_every_bad_file_is_reported_at_once_before_training(tiny_train_args, tmp_path, capsys):
    root = tmp_path / "data"
    write_rgb(root / "trainA", 3)
    write_rgb(root / "trainB", 3)
    bad = {
        root / "trainA" / "empty.png": "empty file",
        root / "trainA" / "random.jpg": "not an image (PIL cannot identify the format)",
        root / "trainA" / "text.png": "not an image",
        root / "trainA" / "cut_short.jpg": "cannot decode: image file is truncated",
        root / "trainB" / "cut_short.png": "cannot decode: Truncated File Read",
        root / "trainB" / "gone.png": f"broken symbolic link to {tmp_path / 'nowhere.png'}",
    }
    (root / "trainA" / "empty.png").touch()
    (root / "trainA" / "random.jpg").write_bytes(np.random.default_rng(0).bytes(2000))
    (root / "trainA" / "text.png").write_text("hello")
    (root / "trainA" / "cut_short.jpg").write_bytes(jpeg_bytes(64)[:-500])
    (root / "trainB" / "cut_short.png").write_bytes((root / "trainB" / "00.png").read_bytes()[:-300])
    (root / "trainB" / "gone.png").symlink_to(tmp_path / "nowhere.png")

    code, err = train_error(tiny_train_args(dataroot=root, max_dataset_size=100), capsys)
    assert code == 2
    assert err.startswith("error: 6 of 12 image files cannot be used:\n")
    for path, reason in bad.items():
        assert f"  {path}: {reason}" in err
    assert "remove or replace these files" in err and "Traceback" not in err


def test_unusual_but_valid_images_are_converted(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)  # fully transparent: composited on white
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    Image.fromarray(np.full((32, 32), 128, dtype=np.uint8), "L").save(folder / "gray.png")
    Image.fromarray(np.full((32, 32), 65535, dtype=np.uint16)).save(folder / "gray16.png")
    Image.new("CMYK", (32, 32), (0, 0, 0, 0)).save(folder / "cmyk.jpg")  # no ink: white
    Image.new("P", (32, 32)).save(folder / "palette.png")
    with open(folder / "trailer.jpg", "wb") as handle:  # data after the JPEG end marker is legal
        handle.write(jpeg_bytes() + b"camera metadata")
    paths = list_images(folder)
    check_images(paths)  # no false alarms

    assert Image.open(folder / "gray16.png").mode == "I;16"
    for path in paths:
        for channels, mode in ((3, "RGB"), (1, "L")):
            image = load_image(path, channels)
            assert image.mode == mode and image.size == (32, 32), path.name
    assert np.asarray(load_image(folder / "alpha.png", 3)).min() == 255
    assert np.asarray(load_image(folder / "gray16.png", 1)).min() == 255  # 16-bit full scale -> 255, not clipped
    assert np.asarray(load_image(folder / "gray.png", 3)).tolist()[0][0] == [128, 128, 128]
    assert np.asarray(load_image(folder / "cmyk.jpg", 3)).min() >= 250


def test_images_smaller_than_the_crop_are_refused_only_when_not_resized(tmp_path):
    write_rgb(tmp_path / "trainA", 2, size=16)
    write_rgb(tmp_path / "trainB", 2, size=16)
    opt = TrainOptions().parse(as_argv({"dataroot": tmp_path, "load_size": 32, "crop_size": 32}))
    assert create_dataset(opt)[(1, 0)]["A"].shape == (3, 32, 32)  # resize_and_crop scales them up

    opt = TrainOptions().parse(as_argv({"dataroot": tmp_path, "crop_size": 32, "preprocess": "crop"}))
    with pytest.raises(DatasetError) as caught:
        create_dataset(opt)
    message = str(caught.value)
    assert message.startswith("4 of 4 image files cannot be used")
    assert f"{tmp_path / 'trainA' / '00.png'}: 16x16 is smaller than --crop_size 32 with --preprocess crop: use " \
           "--preprocess resize_and_crop or a smaller --crop_size" in message


def test_images_over_the_decompression_bomb_limit_are_refused_up_front(tmp_path):
    Image.new("1", (10000, 10000)).save(tmp_path / "huge.png")  # 100 Mpx: PIL only warns
    Image.new("1", (14000, 14000)).save(tmp_path / "bomb.png")  # 196 Mpx: PIL refuses to open
    write_rgb(tmp_path, 1)
    with warnings.catch_warnings(record=True) as shown, pytest.raises(DatasetError) as caught:
        warnings.simplefilter("always")
        check_images(list_images(tmp_path))
    assert not [w for w in shown if issubclass(w.category, Image.DecompressionBombWarning)]  # our message only
    message = str(caught.value)
    assert message.startswith("2 of 3 image files cannot be used")
    assert f"{tmp_path / 'huge.png'}: 10000x10000 is over PIL's decompression-bomb limit" in message
    assert f"{tmp_path / 'bomb.png'}: Image size (196000000 pixels) exceeds limit" in message
    assert message.count("downscale the file") == 2


def test_decode_error_in_a_loader_worker_reaches_the_user_as_one_line(tiny_train_args, tmp_path, capsys):
    """A file that passes the header check but cannot be converted (LAB has no grayscale conversion)."""
    root = tmp_path / "data"
    write_rgb(root / "trainA", 3)
    write_rgb(root / "trainB", 4)
    Image.new("LAB", (32, 32)).save(root / "trainA" / "zz_lab.tif")
    code, err = train_error(tiny_train_args(dataroot=root, input_nc=1, output_nc=1, num_threads=1), capsys)
    assert code == 1
    assert "Traceback" not in err and "Caught" not in err
    assert err.splitlines()[-1] == (f"error: cannot read image {root / 'trainA' / 'zz_lab.tif'}: conversion from "
                                    "LAB to RGB not supported -- remove or replace the file")


# -- paths ---------------------------------------------------------------------------------------

def test_unicode_spaces_symlinks_and_grayscale_end_to_end(tiny_train_args, tmp_path, capsys):
    root = tmp_path / "dätä sét 1"
    write_rgb(root / "trainA", 2, prefix="ñandú ")
    write_rgb(tmp_path / "elsewhere" / "zebras", 2, prefix="zèbre ")
    (root / "trainB").symlink_to(tmp_path / "elsewhere" / "zebras", target_is_directory=True)
    (root / "trainA" / "linked 02.png").symlink_to(tmp_path / "elsewhere" / "zebras" / "zèbre 00.png")
    (root / "trainA" / "loop").symlink_to(root / "trainA", target_is_directory=True)  # listed once
    write_rgb(root / "testA", 2, prefix="tëst ")
    assert [p.name for p in list_images(root / "trainA")] == ["linked 02.png", "ñandú 00.png", "ñandú 01.png"]

    argv = tiny_train_args("grå run", dataroot=root, input_nc=1, output_nc=1, max_dataset_size=2)
    assert train.main(argv) == 0
    results = tmp_path / "résults"
    assert test_script.main(argv[:6] + ["--results_dir", str(results), "--num_threads", "0"]) == 0  # no nc flags
    fakes = results / "grå run" / "test_latest" / "images" / "fake_B"
    assert sorted(p.name for p in fakes.iterdir()) == ["tëst 00.png", "tëst 01.png"]
    assert Image.open(fakes / "tëst 00.png").mode == "L"  # --output_nc 1 inherited from training
    capsys.readouterr()


# -- flags ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    ({"crop_size": 64, "load_size": 32}, "--crop_size 64 is larger than --load_size 32"),
    ({"batch_size": 0}, "--batch_size must be at least 1"),
    ({"netG": "resnet_99blocks"}, "argument --netG: invalid choice: 'resnet_99blocks'"),
    ({"ngf": 0}, "--ngf must be at least 1"),
    ({"crop_size": 30, "load_size": 30}, "--crop_size 30 must be a multiple of 4"),
    ({"nce_layers": "0,a"}, "--nce_layers 0,a: expected comma-separated layer numbers"),
    ({"gpu_ids": "first"}, "--gpu_ids first: expected GPU numbers"),
    ({"coop_ref_sigma": 0}, "--coop_ref_sigma must be positive"),
    ({"coop_epochs": -1}, "--coop_epochs must be >= 0"),
    ({"save_latest_freq": 0}, "--save_latest_freq must be at least 1"),
])
def test_invalid_flags_exit_2_before_any_work(tiny_train_args, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as caught:
        train.main(tiny_train_args(dataroot=tmp_path / "no data needed", **flags))
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()


def test_different_channel_counts_are_refused_before_training(tiny_train_args, capsys):
    assert train.main(tiny_train_args(input_nc=1)) == 2
    assert capsys.readouterr().err == ("error: PatchNCE runs G's encoder on G's output, so --input_nc 1 must "
                                       "equal --output_nc 3: set both to the same value\n")


def test_nce_layers_beyond_the_generator_are_refused_before_training(tiny_train_args, capsys):
    code, err = train_error(tiny_train_args(nce_layers="0,4,40"), capsys)
    assert code == 2 and err.startswith("error: --nce_layers 0,4,40: --netG ") and "has no layer 40 (its layers are 0-" in err


def test_repeated_nce_layers_are_refused_before_training(tiny_train_args, capsys):
    code, err = train_error(tiny_train_args(nce_layers="0,0,4"), capsys)
    assert code == 2 and err.startswith("error: --nce_layers 0,0,4 repeats layer 0: name each layer once")


def test_a_relative_dataroot_is_found_by_test_py_from_another_folder(tiny_train_args, toy_dataroot, tmp_path,
                                                                     monkeypatch, capsys):
    monkeypatch.chdir(toy_dataroot.parent)
    argv = tiny_train_args(dataroot=toy_dataroot.name, max_dataset_size=1)
    assert train.main(argv) == 0
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / toy_dataroot.name).mkdir(parents=True)  # a folder of the same name here must not be read
    monkeypatch.chdir(elsewhere)
    assert test_script.main(["--checkpoints_dir", str(tmp_path / "checkpoints"), "--name", "tiny", "--gpu_ids", "-1",
                             "--num_threads", "0", "--results_dir", str(tmp_path / "results"), "--num_test", "1"]) == 0
    assert len(list((tmp_path / "results" / "tiny" / "test_latest" / "images" / "fake_B").iterdir())) == 1
    capsys.readouterr()


def test_test_py_and_resume_name_the_option_that_differs_from_training(tiny_train_args, tmp_path, capsys):
    argv = tiny_train_args(max_dataset_size=1)
    assert train.main(argv) == 0
    capsys.readouterr()
    code = test_script.main(argv[:6] + ["--ngf", "16", "--num_threads", "0", "--results_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {tmp_path / 'checkpoints' / 'tiny' / 'latest_net_G_ema.pth'} does not match")
    assert "options that differ from training: --ngf 16 (trained with 8)" in err
    # which tensors differ, not only torch's heading
    assert ": size mismatch for model.1.weight: [8, 3, 7, 7] in the file, [16, 3, 7, 7] in this network; " in err
    assert "Error(s) in loading" not in err and err.count("\n") == 1

    assert train.main(argv + ["--continue_train", "--ngf", "16"]) == 2
    note, err = capsys.readouterr().err.split("\n", 1)  # the flag given over the run's record, then the error
    assert note.startswith("note: --continue_train with options that differ") and "--ngf 16 (was 8)" in note
    assert err.startswith("error: net G does not match this network's architecture")
    assert "options that differ from training: --ngf 16 (trained with 8)" in err
    assert '"ngf": 8' in (tmp_path / "checkpoints" / "tiny" / "train_opt.json").read_text()  # kept


# -- test.py: every check before the previous results are cleared ---------------------------------

def _previous_results(tmp_path: Path, argv: list[str], capsys) -> Path:
    """Translate the toy set once; return its fake_B folder (the results a bad run must not touch)."""
    assert test_script.main(argv) == 0
    capsys.readouterr()
    fake_b = tmp_path / "results" / "tiny" / "test_latest" / "images" / "fake_B"
    assert sorted(fake_b.iterdir())
    return fake_b


def _test_argv(tiny_trained_run, tmp_path: Path, *flags: str) -> list[str]:
    checkpoints, name = tiny_trained_run
    return ["--checkpoints_dir", str(checkpoints), "--name", name, "--gpu_ids", "-1", "--num_threads", "0",
            "--results_dir", str(tmp_path / "results"), *flags]


def test_test_py_lists_too_small_images_and_keeps_previous_results(tiny_trained_run, tmp_path, capsys):
    fake_b = _previous_results(tmp_path, _test_argv(tiny_trained_run, tmp_path), capsys)
    before = sorted(fake_b.iterdir())
    folder = tmp_path / "tiny_images"
    write_rgb(folder, 1)
    Image.new("RGB", (4, 6)).save(folder / "small.png")
    code = test_script.main(_test_argv(tiny_trained_run, tmp_path, "--dataroot", str(folder), "--preprocess", "none"))
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: 1 of 2 image files cannot be used:\n")
    assert f"  {folder / 'small.png'}: 4x6 stays with --preprocess none, smaller than 8 px" in err
    assert "Traceback" not in err
    assert sorted(fake_b.iterdir()) == before


def test_test_py_refuses_inputs_whose_outputs_share_a_name(tiny_trained_run, tmp_path, capsys):
    fake_b = _previous_results(tmp_path, _test_argv(tiny_trained_run, tmp_path), capsys)
    before = sorted(fake_b.iterdir())
    folder = tmp_path / "clash"
    for name in ("0001.png", "0001.jpg", "0002.png", "sub/0002.png", "0003.png"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32)).save(folder / name)
    code = test_script.main(_test_argv(tiny_trained_run, tmp_path, "--dataroot", str(folder)))
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: 2 output name(s) would be shared by several inputs")
    assert f"  0001.png <- {folder / '0001.jpg'}, {folder / '0001.png'}\n" in err
    assert f"  0002.png <- {folder / '0002.png'}, {folder / 'sub' / '0002.png'}\n" in err
    assert "0003.png <-" not in err and "rename these inputs" in err
    assert sorted(fake_b.iterdir()) == before


def test_test_py_takes_the_runs_dataroot_and_names_the_flag_when_there_is_none(tiny_trained_run, toy_dataroot,
                                                                              tmp_path, capsys):
    checkpoints, _ = tiny_trained_run
    assert test_script.main(_test_argv(tiny_trained_run, tmp_path)) == 0  # no --dataroot: the run's toy set
    fake_b = tmp_path / "results" / "tiny" / "test_latest" / "images" / "fake_B"
    assert sorted(p.name for p in fake_b.iterdir()) == sorted(f"{p.stem}.png" for p in (toy_dataroot / "testA").iterdir())
    capsys.readouterr()
    (checkpoints / "no_options").mkdir(exist_ok=True)
    for name in ("no_options", "no_such_run"):
        argv = _test_argv(tiny_trained_run, tmp_path)
        argv[argv.index("--name") + 1] = name
        assert test_script.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --dataroot not given, and ") and "pass --dataroot" in err
        assert "--dataset_mode" not in err
    (checkpoints / "no_dataroot").mkdir(exist_ok=True)
    (checkpoints / "no_dataroot" / "train_opt.json").write_text("{}")  # edited by hand
    argv = _test_argv(tiny_trained_run, tmp_path)
    argv[argv.index("--name") + 1] = "no_dataroot"
    assert test_script.main(argv) == 2
    assert (f"error: --dataroot not given, and the run {checkpoints / 'no_dataroot'} records none (its "
            "train_opt.json names no dataroot): pass --dataroot" in capsys.readouterr().err)


def test_test_py_names_the_saved_epochs_when_a_checkpoint_is_missing(tiny_trained_run, toy_dataroot, tmp_path,
                                                                    capsys):
    assert test_script.main(_test_argv(tiny_trained_run, tmp_path, "--epoch", "7")) == 2
    err = capsys.readouterr().err
    assert "7_net_G.pth -- the run folder exists; epochs saved there: latest, 1; pass one with --epoch" in err
    argv = _test_argv(tiny_trained_run, tmp_path, "--dataroot", str(toy_dataroot))
    argv[argv.index("--name") + 1] = "tinny"
    assert test_script.main(argv) == 2
    assert "there is no run folder tinny in" in (err := capsys.readouterr().err) and "runs there: tiny" in err


@pytest.mark.parametrize("value", ["0", "-3"])
def test_test_py_refuses_num_test_under_one(tiny_trained_run, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as caught:
        test_script.main(_test_argv(tiny_trained_run, tmp_path, "--num_test", value))
    assert caught.value.code == 2
    assert f"--num_test {value} must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
