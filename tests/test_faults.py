"""Faults during training: signals, kills, full or unwritable disks, NaN/Inf, visdom down.

Nothing may be lost beyond the last checkpoint, and no checkpoint may hold a torn file or a
non-finite weight. The long kill/resume soak is bench/soak.py; a short run of it is marked slow.
"""
from __future__ import annotations

import errno
import multiprocessing
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import train
from bench import soak
from conftest import run_dir
from data.unaligned_dataset import UnalignedDataset
from models.cut_model import CUTModel
from util.checkpoint import CheckpointError, atomic_save, non_finite_tensors, safe_load
from util.run_log import read_jsonl

ROOT = Path(__file__).resolve().parents[1]


def logged_iterations(folder: Path) -> list[int]:
    """`iter` of each complete line of loss_log.jsonl (another process may be writing the last one)."""
    return [entry["iter"] for entry in read_jsonl(folder / "loss_log.jsonl")]


def wait_until_gone(process_group: int, timeout: float = 10) -> bool:
    """True once no process of the group is left (data-loader workers included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(process_group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def last_error(capsys) -> str:
    """The last line written to stderr (tqdm's progress bar shares it)."""
    return capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]


def assert_latest_is_iteration(folder: Path, iteration: int) -> None:
    """latest_state.pth says `iteration`, and the latest weight files hold the same finite weights."""
    state = safe_load(folder / "latest_state.pth")
    assert state["iteration"] == iteration
    for net, weights in state["model"]["nets"].items():
        saved = safe_load(folder / f"latest_net_{net}.pth")
        assert not non_finite_tensors(saved)
        assert all(torch.equal(saved[key], value) for key, value in weights.items()), net
    assert not list(folder.glob(".*.tmp"))


# -- signals -------------------------------------------------------------------------------------

def test_sigint_and_sigterm_save_latest_then_the_printed_command_resumes(tiny_train_args):
    """Ctrl-C reaches the whole process group (workers included), `kill` only the main process."""
    EPOCHS = 30  # noqa: N806
    cases = {  # name: (signal, sent to the process group, data-loader workers)
        "int_group_workers": (signal.SIGINT, True, 1),
        "term_group_workers": (signal.SIGTERM, True, 1),
        "term_main": (signal.SIGTERM, False, 0),
    }
    runs = {}
    for name, (_, _, workers) in cases.items():  # started together: interpreter start-up dominates
        # Long enough (120 iterations) that the signal always lands mid-run, not after the last save.
        argv = tiny_train_args(name, n_epochs=EPOCHS, num_threads=workers)
        proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *argv], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        runs[name] = (argv, proc)
    for name, (signum, group, _) in cases.items():
        argv, proc = runs[name]
        deadline = time.monotonic() + 120
        while len(logged_iterations(run_dir(argv))) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.05)
        (os.killpg if group else os.kill)(proc.pid, signum)

    for name, (signum, _, _) in cases.items():
        argv, proc = runs[name]
        output = proc.communicate(timeout=120)[0]
        assert proc.returncode == 128 + signum, output
        assert wait_until_gone(proc.pid), "a data-loader worker outlived the main process"
        stopped_at = safe_load(run_dir(argv) / "latest_state.pth")["iteration"]
        message = f"{signal.Signals(signum).name}: saved the latest checkpoint at iteration {stopped_at}. Resume with:"
        assert message in output and "Traceback" not in output
        command = shlex.split(output.split(message, 1)[1].splitlines()[0])
        assert command[:2] == [sys.executable, "train.py"] and command[-1] == "--continue_train"  # runnable as printed
        assert logged_iterations(run_dir(argv)) == list(range(1, stopped_at + 1))

        assert train.main(command[2:]) == 0
        assert_latest_is_iteration(run_dir(argv), 4 * EPOCHS)  # 4 images per epoch
        assert logged_iterations(run_dir(argv)) == list(range(1, 4 * EPOCHS + 1))


def test_sigterm_to_the_group_while_waiting_for_a_batch_still_saves(tiny_train_args, monkeypatch):
    """The worker leaves before delivering the batch the main process waits for (data-bound training)."""
    get_item = UnalignedDataset.__getitem__

    def slow_get_item(self, key):
        time.sleep(0.3 if key[1] else 0)  # forked workers inherit the patch
        return get_item(self, key)
    monkeypatch.setattr(UnalignedDataset, "__getitem__", slow_get_item)
    argv = tiny_train_args("slow", num_threads=1, n_epochs=3)

    def signal_the_group_after_one_iteration():
        while not logged_iterations(run_dir(argv)):
            time.sleep(0.02)
        for worker in multiprocessing.active_children():
            os.kill(worker.pid, signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill -- -PGID` would, without ending pytest
    killer = threading.Thread(target=signal_the_group_after_one_iteration)
    killer.start()
    assert train.main(argv) == 128 + signal.SIGTERM
    killer.join()
    stopped_at = safe_load(run_dir(argv) / "latest_state.pth")["iteration"]
    assert stopped_at >= 1 and logged_iterations(run_dir(argv)) == list(range(1, stopped_at + 1))


@pytest.mark.slow
def test_soak_survives_sigkills_in_both_stages_and_during_writes(tmp_path, capsys):
    """A short bench/soak.py (docs/results.md reports the long one)."""
    assert soak.main(["--kills", "5", "--epochs", "3", "--coop_epochs", "1", "--workdir", str(tmp_path)]) == 0
    report = capsys.readouterr().out
    assert "5 SIGKILLs survived" in report and "identical" in report


# -- disks ---------------------------------------------------------------------------------------

def test_disk_full_while_saving_stops_cleanly_and_keeps_the_last_good_checkpoint(tiny_train_args, monkeypatch,
                                                                                 capsys):
    replace = os.replace
    calls = []

    def replace_until_the_disk_fills(src, dst):
        if str(dst).endswith(".pth"):
            calls.append(dst)
            if len(calls) > 5:  # the save at iteration 2 (4 weight files + state) fits, later ones do not
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        replace(src, dst)
    monkeypatch.setattr(os, "replace", replace_until_the_disk_fills)

    argv = tiny_train_args("full", save_latest_freq=2)
    assert train.main(argv) == 1
    err = last_error(capsys)
    assert err.startswith(f"error: cannot write checkpoint {run_dir(argv) / 'latest_net_G.pth'}: "
                          "[Errno 28] No space left on device -- the previous checkpoint is unchanged")
    assert "then resume with --continue_train" in err
    assert_latest_is_iteration(run_dir(argv), 2)


def test_real_full_disk_is_an_error_not_a_torn_file(tmp_path):
    """ENOSPC from a real 1 MiB tmpfs (needs root to mount; skipped elsewhere)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        atomic_save({"w": torch.ones(10)}, disk / "latest_state.pth")
        with pytest.raises(CheckpointError, match=r"latest_state.pth: \[Errno 28\] No space left on device"):
            atomic_save({"w": torch.zeros(1_000_000)}, disk / "latest_state.pth")
        assert torch.equal(safe_load(disk / "latest_state.pth")["w"], torch.ones(10))
        assert [p.name for p in disk.iterdir()] == ["latest_state.pth"]
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_unusable_checkpoints_dir_is_named_before_training(tiny_train_args, tmp_path, capsys):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    argv = tiny_train_args("run", checkpoints_dir=not_a_folder)
    assert train.main(argv) == 2
    err = last_error(capsys)
    assert err.startswith("error: [Errno 20] Not a directory") and str(not_a_folder) in err
    assert "--checkpoints_dir must be a writable folder with free space" in err


def test_a_kill_leaves_temp_files_that_the_next_start_removes(tiny_train_args, capsys):
    argv = tiny_train_args("tmp", save_latest_freq=2)
    assert train.main(argv) == 0
    folder = run_dir(argv)
    leftover = folder / ".latest_state.pth.12345.abcd.tmp"  # as a SIGKILL during atomic_save leaves it
    leftover.write_bytes(b"half a checkpoint")
    assert train.main(argv + ["--continue_train"]) == 0
    assert not leftover.exists()
    assert f"removed {leftover.name}" in capsys.readouterr().out


# -- numbers -------------------------------------------------------------------------------------

def poison_discriminator_at(monkeypatch, iteration: int) -> None:
    """D returns NaN scores during the given 1-based iteration (and only then)."""
    optimize = CUTModel.optimize

    def optimize_with_nan(self, index):
        if index + 1 != iteration:
            return optimize(self, index)
        forward = self.netD.forward
        self.netD.forward = lambda x: forward(x) * float("nan")
        try:
            return optimize(self, index)
        finally:
            self.netD.forward = forward
    monkeypatch.setattr(CUTModel, "optimize", optimize_with_nan)


@pytest.mark.parametrize("iteration, quantity", [(3, "non-finite langevin"),  # stage 1: the Langevin chain
                                                 (6, "non-finite discriminator loss")])  # stage 2: D's GAN loss
def test_nan_stops_training_naming_iteration_and_quantity_without_saving_it(tiny_train_args, monkeypatch, capsys,
                                                                            iteration, quantity):
    poison_discriminator_at(monkeypatch, iteration)
    argv = tiny_train_args("nan", n_epochs=2, coop_epochs=1, save_latest_freq=1)  # 4 iterations per epoch
    assert train.main(argv) == 1
    err = last_error(capsys)
    assert err.startswith(f"error: {quantity}")
    assert f"at iteration {iteration} (epoch {(iteration - 1) // 4 + 1}); no checkpoint was written for it" in err
    assert_latest_is_iteration(run_dir(argv), iteration - 1)


def test_non_finite_weights_are_never_written(tiny_train_args, monkeypatch, capsys):
    """A NaN that reaches the weights without a NaN loss (e.g. from a NaN gradient) is caught at the save."""
    optimize = CUTModel.optimize

    def optimize_then_corrupt(self, index):
        stage = optimize(self, index)
        if index + 1 == 3:
            next(self.netD.parameters()).data.fill_(float("inf"))
        return stage
    monkeypatch.setattr(CUTModel, "optimize", optimize_then_corrupt)
    argv = tiny_train_args("inf", save_latest_freq=1)
    assert train.main(argv) == 1
    assert last_error(capsys).startswith("error: refusing to save net D: non-finite values in ")
    assert_latest_is_iteration(run_dir(argv), 2)  # G and F of iteration 3 were not written either


# -- live view -----------------------------------------------------------------------------------

def test_training_continues_when_the_visdom_server_is_down(tiny_train_args, caplog):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = tiny_train_args("novisdom", display_id=1, display_port=port, display_freq=1)
    assert train.main(argv) == 0
    assert logged_iterations(run_dir(argv)) == [1, 2, 3, 4]
    assert any("no visdom server answers at" in r.getMessage() for r in caplog.records)


def test_architecture_mismatch_lists_a_few_tensors_and_counts_the_rest():
    from models.base_model import mismatch_summary
    keys = ", ".join(f'"model.{i}.weight"' for i in range(10))
    sizes = [f"\tsize mismatch for model.{i}.bias: copying a param with shape torch.Size([8]) from checkpoint, "
             "the shape in current model is torch.Size([16])." for i in range(4)]
    error = "\n".join(["Error(s) in loading state_dict for ResnetGenerator:", f"\tMissing key(s) in state_dict: {keys}. ",
                       *sizes])
    assert mismatch_summary(error) == (
        'Missing key(s) in state_dict: "model.0.weight", "model.1.weight", "model.2.weight", "model.3.weight" '
        "(+6 more); size mismatch for model.0.bias: [8] in the file, [16] in this network; size mismatch for "
        "model.1.bias: [8] in the file, [16] in this network; ... and 2 more")
