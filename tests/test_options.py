"""Flags: CUT / FastCUT / CoopInit defaults, overrides, validation, --help, and test.py's inheritance."""
from __future__ import annotations

import json
import re

import pytest

from models.schedule import COOP_STAGE_DEFAULT
from options.test_options import TestOptions
from options.train_options import TrainOptions


def parse_train(*argv: str):
    return TrainOptions().parse(list(argv))


def test_cut_defaults():
    opt = parse_train()
    assert (opt.CUT_mode, opt.nce_idt, opt.lambda_NCE, opt.flip_equivariance) == ("CUT", True, 1.0, False)
    assert (opt.n_epochs, opt.n_epochs_decay) == (200, 200)
    assert (opt.lambda_GAN, opt.nce_T, opt.num_patches, opt.nce_layers) == (1.0, 0.07, 256, "0,4,8,12,16")
    assert (opt.netG, opt.netD, opt.ngf, opt.ndf, opt.normG, opt.init_type, opt.init_gain) == \
        ("resnet_9blocks", "basic", 64, 64, "instance", "xavier", 0.02)
    assert (opt.lr, opt.beta1, opt.beta2, opt.gan_mode, opt.batch_size) == (0.0002, 0.5, 0.999, "lsgan", 1)
    assert (opt.load_size, opt.crop_size, opt.preprocess, opt.no_dropout) == (286, 256, "resize_and_crop", True)


@pytest.mark.parametrize("mode", ["FastCUT", "fastcut"])
def test_fastcut_defaults(mode):
    opt = parse_train("--CUT_mode", mode)
    assert (opt.nce_idt, opt.lambda_NCE, opt.flip_equivariance) == (False, 10.0, True)
    assert (opt.n_epochs, opt.n_epochs_decay) == (150, 50)


def test_explicit_flags_override_mode_defaults():
    opt = parse_train("--CUT_mode", "FastCUT", "--nce_idt", "--lambda_NCE", "2", "--flip_equivariance", "False",
                      "--n_epochs", "7", "--n_epochs_decay", "3")
    assert (opt.nce_idt, opt.lambda_NCE, opt.flip_equivariance, opt.n_epochs, opt.n_epochs_decay) == \
        (True, 2.0, False, 7, 3)
    opt = parse_train("--nce_idt", "no", "--lambda_NCE", "4")
    assert (opt.nce_idt, opt.lambda_NCE) == (False, 4.0)


def test_coopinit_defaults():
    opt = parse_train()
    share = float(COOP_STAGE_DEFAULT.rstrip("%")) / 100  # of CUT's 200 + 200 epochs
    assert (opt.coop_epochs, opt.coop_langevin_steps, opt.coop_step_size, opt.coop_ref_sigma) == \
        (pytest.approx(share * 400), 15, 0.3, 10.0)
    assert (opt.coop_noise, opt.lambda_teach, opt.coop_energy_reg, opt.coop_blend_iters) == (False, 1.0, 0.0, 0)
    assert opt.coop_reset_optimizers == "D" and opt.coop_calibrate_D  # the measured switch (docs/coopinit.md)
    assert parse_train("--coop_reset_optimizers").coop_reset_optimizers == "D"  # the spec's D-only reset
    assert parse_train("--coop_noise", "on", "--coop_epochs", "0.5").coop_noise is True


@pytest.mark.parametrize("value,epochs", [("2", 2.0), ("0.5", 0.5), ("10%", 0.8), ("0", 0.0), ("0%", 0.0)])
def test_coop_epochs_takes_epochs_or_a_share_of_the_schedule(value, epochs):
    opt = parse_train("--n_epochs", "6", "--n_epochs_decay", "2", "--coop_epochs", value)
    assert opt.coop_epochs == pytest.approx(epochs)


@pytest.mark.parametrize("value", ["five", "5%%", "%", "-5%"])
def test_coop_epochs_rejects_other_forms_naming_the_flag(value, capsys):
    with pytest.raises(SystemExit):
        parse_train("--coop_epochs", value)
    assert "--coop_epochs" in capsys.readouterr().err


@pytest.mark.parametrize("argv,flag", [
    (["--crop_size", "64", "--load_size", "32"], "--crop_size"),
    (["--batch_size", "0"], "--batch_size"),
    (["--netG", "resnet_7blocks"], "--netG"),
    (["--n_epochs", "0", "--n_epochs_decay", "0"], "--n_epochs"),
    (["--print_freq", "0"], "--print_freq"),
    (["--lr", "-1"], "--lr must be positive"),
    (["--load_size", "16", "--crop_size", "16"],
     "--crop_size 16 is smaller than 24 px, the smallest side --netD basic with --normD instance takes: use "
     "--crop_size 24 or more (and --load_size as large)"),
    (["--load_size", "32", "--crop_size", "32", "--netD", "n_layers", "--n_layers_D", "8"],
     "--crop_size 32 is smaller than 768 px, the smallest side --netD n_layers --n_layers_D 8 with --normD instance "
     "takes: use --crop_size 768 or more (and --load_size as large) or a smaller --n_layers_D"),
    (["--crop_size", "4", "--preprocess", "crop", "--netD", "pixel"],
     "--crop_size 4 is smaller than 8 px, the smallest side the generator takes: use --crop_size 8 or more"),
    (["--lr", "0"], "--lr must be positive"),
    (["--lr", "nan"], "--lr must be positive"),
    (["--lr", "inf"], "--lr must be positive and finite"),
    (["--n_epochs", "1", "--n_epochs_decay", "0", "--epoch_count", "5"],
     "--epoch_count 5 is outside the schedule, epochs 1 to 1 (--n_epochs + --n_epochs_decay)"),
    (["--epoch_count", "0"], "--epoch_count 0 is outside the schedule"),
    (["--suffix", "{no_such_option}"], "--suffix {no_such_option}: every {field} must name an option"),
])
def test_invalid_combinations_exit_2_naming_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_train(*argv)
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--load_size", "24", "--crop_size", "24"],
                                  ["--load_size", "12", "--crop_size", "12", "--netD", "n_layers", "--n_layers_D", "2"],
                                  ["--load_size", "8", "--crop_size", "8", "--netD", "pixel"]])
def test_the_smallest_crop_the_networks_take_is_accepted(argv):
    assert parse_train(*argv).crop_size == int(argv[3])


@pytest.mark.parametrize("options,some_flags", [(TrainOptions, {"--coop_epochs", "--CUT_mode", "--nce_idt"}),
                                                (TestOptions, {"--results_dir", "--CUT_mode", "--num_test"})])
def test_help_mentions_every_flag(options, some_flags, capsys):
    parser_owner = options()
    with pytest.raises(SystemExit) as exit_info:
        parser_owner.parse(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    mentioned = set(re.findall(r"--\w+", help_text))
    flags = {s for action in parser_owner.parser._actions for s in action.option_strings if s.startswith("--")}
    assert some_flags <= flags  # the model's and dataset's flags are part of the parser
    assert flags - mentioned == set()


def test_n_layers_D_without_netD_n_layers_warns_that_it_does_nothing(caplog, tmp_path):
    with caplog.at_level("WARNING", logger="options.base_options"):
        assert parse_train("--n_layers_D", "2").n_layers_D == 2  # accepted, as CUT accepts it
    assert "--n_layers_D 2 has no effect with --netD basic" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="options.base_options"):
        parse_train("--netD", "n_layers", "--n_layers_D", "2")
        TestOptions().parse(["--n_layers_D", "2", "--checkpoints_dir", str(tmp_path)])  # test.py builds no D
    assert "n_layers_D" not in caplog.text


def test_test_options_inherit_architecture_from_training(tmp_path):
    trained = parse_train("--name", "run", "--checkpoints_dir", str(tmp_path), "--netG", "resnet_4blocks",
                          "--ngf", "8", "--input_nc", "1", "--no_antialias", "--crop_size", "32",
                          "--load_size", "40", "--normG", "batch", "--direction", "BtoA")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train_opt.json").write_text(json.dumps(vars(trained), default=str))
    opt = TestOptions().parse(["--name", "run", "--checkpoints_dir", str(tmp_path)])
    assert (opt.netG, opt.ngf, opt.input_nc, opt.no_antialias, opt.normG, opt.direction) == \
        ("resnet_4blocks", 8, 1, True, "batch", "BtoA")
    assert (opt.crop_size, opt.load_size) == (32, 32)  # translated at the trained size, uncropped
    assert (opt.dataset_mode, opt.serial_batches, opt.no_flip, opt.isTrain) == ("single", True, True, False)
    given = TestOptions().parse(["--name", "run", "--checkpoints_dir", str(tmp_path), "--ngf", "16"])
    assert (given.ngf, given.netG) == (16, "resnet_4blocks")
    fresh = TestOptions().parse(["--name", "other", "--checkpoints_dir", str(tmp_path)])
    assert (fresh.netG, fresh.crop_size, fresh.load_size) == ("resnet_9blocks", 256, 256)


def test_suffix_names_the_run_whose_options_are_read(tmp_path):
    """CUT's --suffix: NAME_{formatted}. test.py and --continue_train read that folder's train_opt.json."""
    trained = parse_train("--name", "run", "--checkpoints_dir", str(tmp_path), "--suffix", "{netG}_{ngf}",
                          "--netG", "resnet_4blocks", "--ngf", "8", "--crop_size", "32", "--load_size", "32")
    assert trained.name == "run_resnet_4blocks_8"
    (tmp_path / trained.name).mkdir()
    (tmp_path / trained.name / "train_opt.json").write_text(json.dumps(vars(trained), default=str))
    given = ["--name", "run", "--checkpoints_dir", str(tmp_path), "--suffix", "{netG}_{ngf}", "--netG",
             "resnet_4blocks", "--ngf", "8"]
    tested = TestOptions().parse(given)
    assert (tested.name, tested.crop_size) == ("run_resnet_4blocks_8", 32)
    resumed = parse_train(*given, "--continue_train")
    assert (resumed.name, resumed.crop_size) == ("run_resnet_4blocks_8", 32)


@pytest.mark.parametrize("text", ["", "{\"ngf\": 8", "[1, 2]"])
def test_a_damaged_train_opt_json_is_an_error_naming_the_file(tmp_path, capsys, text):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train_opt.json").write_text(text)
    run = ["--name", "run", "--checkpoints_dir", str(tmp_path)]
    for parse in (lambda: TestOptions().parse(run), lambda: parse_train(*run, "--continue_train")):
        with pytest.raises(SystemExit) as exit_info:
            parse()
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert f"{tmp_path / 'run' / 'train_opt.json'} is not a JSON object of options" in err
        assert "restore it from train_opt.txt" in err and "Traceback" not in err


def test_a_positive_stage_is_at_least_one_iteration():
    from models.schedule import StageSchedule

    assert StageSchedule.from_epochs(coop_epochs=0.17, iters_per_epoch=2, blend_iters=0).coop_iters == 1
    assert StageSchedule.from_epochs(coop_epochs=0.0, iters_per_epoch=2, blend_iters=0).coop_iters == 0
    assert StageSchedule.from_epochs(coop_epochs=0.7, iters_per_epoch=4, blend_iters=0).coop_iters == 3


def test_first_iteration_of_each_stage_is_one_based():
    from models.schedule import StageSchedule
    schedule = StageSchedule(coop_iters=153, blend_iters=10)
    assert [schedule.first_iteration(s) for s in ("coop", "blend", "adversarial")] == [1, 154, 164]
    assert schedule.stage(153 - 1) == "coop" and schedule.stage(154 - 1) == "blend"  # 1-based vs 0-based


def test_continue_train_takes_the_runs_recorded_options(tmp_path, capsys):
    run = ["--name", "run", "--checkpoints_dir", str(tmp_path)]
    trained = parse_train(*run, "--crop_size", "64", "--load_size", "64", "--ngf", "16", "--n_epochs", "2",
                          "--n_epochs_decay", "0", "--max_dataset_size", "20", "--gpu_ids", "-1")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train_opt.json").write_text(json.dumps({**vars(trained), "gone_flag": 1}, default=str))
    resumed = parse_train(*run, "--continue_train")
    for key in ("crop_size", "load_size", "ngf", "n_epochs", "n_epochs_decay", "max_dataset_size", "coop_epochs"):
        assert getattr(resumed, key) == getattr(trained, key), key
    assert resumed.gpu_ids is None and not hasattr(resumed, "gone_flag")  # this machine's device; old flags dropped
    assert "note:" not in capsys.readouterr().err
    extended = parse_train(*run, "--continue_train", "--n_epochs", "5")
    assert (extended.n_epochs, extended.crop_size) == (5, 64)
    assert "--n_epochs 5 (was 2)" in capsys.readouterr().err
    assert parse_train(*run).crop_size == 256  # without --continue_train a run starts afresh from the defaults
    assert parse_train(*run, "--continue").crop_size == 64  # argparse's abbreviation resumes as well
    # train.py records an unlimited --max_dataset_size as "inf" (strict JSON), and a resume reads it back
    (tmp_path / "run" / "train_opt.json").write_text(json.dumps({**vars(trained), "max_dataset_size": "inf"},
                                                                default=str))
    assert parse_train(*run, "--continue_train").max_dataset_size == float("inf")


def test_max_dataset_size_takes_a_count_or_inf():
    assert parse_train("--max_dataset_size", "20").max_dataset_size == 20
    assert parse_train("--max_dataset_size", "inf").max_dataset_size == float("inf") == parse_train().max_dataset_size
    with pytest.raises(SystemExit):
        parse_train("--max_dataset_size", "lots")
