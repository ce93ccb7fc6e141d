"""Checkpoints from elsewhere: the reference CUT code's files translate, reproduce its outputs and
fine-tune; files saved on a GPU load on a CPU; a real architecture mismatch is still named.

The reference's files (tests/fixtures/reference_cut/README.md) are read from ../shared/fixtures/
beside the checkout when it is there, checked equal to the copy in this repository, else from the copy.
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.serialization
from PIL import Image

import train
from conftest import load_test_script
from data import create_dataset
from models import create_model
from models.reference_checkpoint import convert_state_dict
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.checkpoint import CheckpointError, safe_load
from util.image import to_uint8

ROOT = Path(__file__).resolve().parents[1]
REPO_COPY = ROOT / "tests" / "fixtures" / "reference_cut"
SHARED_COPY = ROOT.parent / "shared" / "fixtures" / "reference_cut"
test_script = load_test_script()

TOLERANCE = 1e-5  # float32 on a CPU, as the issue asks


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def reference() -> Path:
    """The reference CUT's files: ../shared's when present (and equal to the repository's copy)."""
    if SHARED_COPY.is_dir():
        assert files_of(SHARED_COPY) == files_of(REPO_COPY), "tests/fixtures/reference_cut differs from ../shared's"
        return SHARED_COPY
    return REPO_COPY


@pytest.fixture
def writable_reference(reference, tmp_path) -> Path:
    """A checkpoints folder holding the reference run ref_cut, where new runs may be written."""
    shutil.copytree(reference / "checkpoints", tmp_path / "checkpoints")
    return tmp_path / "checkpoints"


@pytest.fixture
def input_folder(reference, tmp_path) -> Path:
    """A plain folder with the reference's test image (CUT's --dataroot for --dataset_mode single)."""
    folder = tmp_path / "input"
    folder.mkdir()
    shutil.copy(reference / "input_0000.png", folder)
    return folder


def test_generator_and_discriminator_reproduce_the_reference_outputs(reference, input_folder):
    checkpoints = str(reference / "checkpoints")
    opt = TestOptions().parse(["--name", "ref_cut", "--checkpoints_dir", checkpoints, "--gpu_ids", "-1",
                               "--dataroot", str(input_folder), "--num_threads", "0"])
    assert (opt.ngf, opt.crop_size, opt.load_size) == (8, 64, 64)  # from the reference's train_opt.txt
    image = create_dataset(opt)[0]["A"][None]
    expected_input = torch.from_numpy(np.load(reference / "input_0000.npy"))
    torch.testing.assert_close(image, expected_input, rtol=0, atol=1e-6)  # test.py feeds what CUT fed

    model = create_model(opt, torch.device("cpu"))  # as test.py: load, then the inference fast path
    model.load_networks(reference / "checkpoints" / "ref_cut", "latest", ["G"])
    model.prepare_inference()
    fake = model.translate(expected_input)
    assert (fake - torch.from_numpy(np.load(reference / "expected_G_0000.npy"))).abs().max() <= TOLERANCE

    train_opt = TrainOptions().parse(["--name", "new", "--pretrained_name", "ref_cut", "--checkpoints_dir",
                                      checkpoints, "--gpu_ids", "-1"])
    assert (train_opt.ndf, train_opt.netF_nc) == (8, 256)  # D's and F's shapes come from the reference run too
    trainer_model = create_model(train_opt, torch.device("cpu"))
    trainer_model.load_networks(reference / "checkpoints" / "ref_cut", "latest", ["D"])
    trainer_model.netD.eval()
    with torch.no_grad():
        scores = trainer_model.netD(expected_input)
    assert (scores - torch.from_numpy(np.load(reference / "expected_D_0000.npy"))).abs().max() <= TOLERANCE


def test_test_py_translates_a_folder_with_the_reference_checkpoints(reference, input_folder, tmp_path, capsys):
    code = test_script.main(["--name", "ref_cut", "--checkpoints_dir", str(reference / "checkpoints"),
                             "--dataroot", str(input_folder), "--dataset_mode", "single", "--gpu_ids", "-1",
                             "--num_threads", "0", "--results_dir", str(tmp_path / "results")])
    assert code == 0, capsys.readouterr().err
    written = np.asarray(Image.open(tmp_path / "results" / "ref_cut" / "test_latest" / "images" / "fake_B" /
                                    "input_0000.png"), dtype=np.int16)
    expected = to_uint8(torch.from_numpy(np.load(reference / "expected_G_0000.npy")))[0].astype(np.int16)
    assert np.abs(written - expected).max() <= 1  # 8-bit rounding of outputs equal within 1e-5


def test_a_real_architecture_mismatch_is_still_named(reference, input_folder, tmp_path, capsys):
    code = test_script.main(["--name", "ref_cut", "--checkpoints_dir", str(reference / "checkpoints"),
                             "--dataroot", str(input_folder), "--gpu_ids", "-1", "--num_threads", "0",
                             "--results_dir", str(tmp_path), "--ngf", "16", "--no_antialias_up"])
    err = capsys.readouterr().err
    assert code == 2
    assert "does not match this network's architecture" in err
    assert "options that differ from training: --ngf 16 (trained with 8), --no_antialias_up True (trained with " \
           "False)" in err


@pytest.mark.parametrize("key", ["module.model.7.filt", "module.model.21.filt"])  # a down- and an upsampling filter
def test_a_reference_filter_that_differs_from_ours_is_refused(reference, key):
    state = safe_load(reference / "checkpoints" / "ref_cut" / "latest_net_G.pth")
    opt = TestOptions().parse(["--name", "ref_cut", "--checkpoints_dir", str(reference / "checkpoints")])
    net = create_model(opt, torch.device("cpu")).netG
    net.load_state_dict(convert_state_dict(state, net, source="G"))  # unchanged: loads
    state[key] = state[key].clone()
    state[key][:, :, 0, 0] += 0.1
    with pytest.raises(CheckpointError, match=rf"G: the anti-aliasing filter {key[len('module.'):]} is not the "
                                              "binomial blur"):
        convert_state_dict(state, net, source="G")


def reference_weights(checkpoints: Path, name: str) -> dict[str, dict[str, torch.Tensor]]:
    return {net: safe_load(checkpoints / name / f"latest_net_{net}.pth") for net in "GDF"}


def test_fine_tuning_starts_from_the_reference_weights_with_fresh_optimizers_and_coopinit(
        writable_reference, tmp_path, toy_dataroot, capsys):
    base = ["--dataroot", str(toy_dataroot), "--checkpoints_dir", str(writable_reference), "--gpu_ids", "-1",
            "--display_id", "0", "--num_threads", "0", "--load_size", "64", "--crop_size", "64",
            "--max_dataset_size", "1", "--n_epochs", "1", "--n_epochs_decay", "0", "--coop_langevin_steps", "1"]
    options = TrainOptions()
    opt = options.parse(base + ["--name", "fine_tuned", "--pretrained_name", "ref_cut"])
    trainer = train.Trainer(opt, options)
    reference_state = {net: convert_state_dict(state, trainer.model.nets[net], source=net)
                       for net, state in reference_weights(writable_reference, "ref_cut").items()}
    for net, state in reference_state.items():
        for key, value in trainer.model.nets[net].state_dict().items():
            assert torch.equal(value, state[key]), f"net {net} {key} was not loaded"
    assert all(not optimizer.state for optimizer in trainer.model.optimizers.values())  # fresh
    assert trainer.model.schedule.coop_iters > 0 and trainer.iteration == 0  # CoopInit runs from the start
    trainer.run()
    assert (writable_reference / "fine_tuned" / "latest_net_G.pth").is_file()
    assert "starting from the weights in" in capsys.readouterr().out

    # CUT's own spelling, --continue_train --pretrained_name, starts from the other run too ...
    opt = options.parse(base + ["--name", "cut_style", "--pretrained_name", "ref_cut", "--continue_train"])
    assert torch.equal(train.Trainer(opt, options).model.netG.state_dict()["model.1.weight"],
                       reference_state["G"]["model.1.weight"])
    # ... but once this run has a checkpoint of its own, --continue_train resumes that one.
    opt = options.parse(base + ["--name", "fine_tuned", "--pretrained_name", "ref_cut", "--continue_train"])
    assert train.Trainer(opt, options).iteration == 1
    # --coop_epochs 0 turns CoopInit off, as for any run.
    opt = options.parse(base + ["--name", "plain", "--pretrained_name", "ref_cut", "--coop_epochs", "0"])
    assert train.Trainer(opt, options).model.schedule.coop_iters == 0


def test_continue_train_resumes_a_reference_run_from_its_weights(writable_reference, toy_dataroot, capsys):
    argv = ["--dataroot", str(toy_dataroot), "--checkpoints_dir", str(writable_reference), "--name", "ref_cut",
            "--gpu_ids", "-1", "--display_id", "0", "--num_threads", "0", "--load_size", "64", "--crop_size", "64",
            "--max_dataset_size", "1", "--ngf", "8", "--ndf", "8", "--continue_train", "--epoch_count", "2",
            "--n_epochs", "2", "--n_epochs_decay", "0", "--coop_epochs", "0"]  # CUT's way: flags repeated
    assert train.main(argv) == 0, capsys.readouterr().err
    assert "resumed weights from" in capsys.readouterr().out
    assert (writable_reference / "ref_cut" / "2_net_G.pth").is_file()
    # with other shapes, the error names the options that differ, as test.py's does
    assert train.main(argv[:argv.index("--ngf")] + ["--ngf", "16"] + argv[argv.index("--ndf"):]) == 2
    assert "options that differ from training: --ngf 16 (trained with 8)" in capsys.readouterr().err


def test_pretrained_name_errors_name_the_flag(writable_reference, toy_dataroot, capsys):
    base = ["--dataroot", str(toy_dataroot), "--checkpoints_dir", str(writable_reference), "--gpu_ids", "-1",
            "--display_id", "0", "--num_threads", "0", "--load_size", "64", "--crop_size", "64",
            "--max_dataset_size", "1", "--name", "new"]
    assert train.main(base + ["--pretrained_name", "nothing_here"]) == 2
    assert ("error: --pretrained_name nothing_here: no latest_net_G.pth, latest_net_F.pth, latest_net_D.pth in "
            f"{writable_reference / 'nothing_here'} -- check --pretrained_name, --checkpoints_dir and --epoch"
            in capsys.readouterr().err)
    assert train.main(base + ["--pretrained_name", "ref_cut", "--ndf", "16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --pretrained_name ref_cut: ")
    assert "options that differ from training: --ndf 16 (trained with 8)" in err


_GPU_TAGGING = [False]
# Registered once (torch keeps a sorted registry); it tags storages only inside saved_as_if_on_a_gpu.
torch.serialization.register_package(1, lambda storage: "cuda:0" if _GPU_TAGGING[0] else None,
                                     lambda storage, location: None)  # loads: left to torch's own


@contextlib.contextmanager
def saved_as_if_on_a_gpu():
    """torch.save in this block tags every storage 'cuda:0', as a save of CUDA tensors does (the
    file's only GPU-specific part: the storage location that torch.load restores to)."""
    _GPU_TAGGING[0] = True
    try:
        yield
    finally:
        _GPU_TAGGING[0] = False


def resave_as_if_on_a_gpu(folder: Path) -> None:
    for path in folder.glob("*.pth"):
        state = safe_load(path)
        with saved_as_if_on_a_gpu():
            torch.save(state, path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks loading on a machine without CUDA")
def test_checkpoints_saved_on_a_gpu_load_on_a_cpu(tiny_train_args, tmp_path, capsys):
    argv = tiny_train_args(max_dataset_size=1)
    assert train.main(argv) == 0
    run = tmp_path / "checkpoints" / "tiny"
    resave_as_if_on_a_gpu(run)
    with pytest.raises(RuntimeError, match="CUDA"):  # the files really carry CUDA locations
        torch.load(run / "latest_net_G.pth", weights_only=True)

    capsys.readouterr()
    assert train.main(argv + ["--continue_train", "--n_epochs", "2"]) == 0, capsys.readouterr().err
    resave_as_if_on_a_gpu(run)
    code = test_script.main(argv[:6] + ["--num_threads", "0", "--results_dir", str(tmp_path / "results")])
    assert code == 0, capsys.readouterr().err
    assert train.main(argv[:4] + ["--name", "from_gpu", *argv[6:], "--pretrained_name", "tiny"]) == 0
