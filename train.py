"""Train CUT / FastCUT with CoopInit on an unpaired dataset.

    python train.py --dataroot ./datasets/horse2zebra --name h2z

Writes checkpoints/NAME/: train_opt.txt, loss_log.txt, loss_log.jsonl, {latest,N}_net_{G,D,F}.pth,
latest_state.pth (full training state for --continue_train) and web/index.html.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, default_collate
from tqdm import tqdm

from data import create_dataset
from data.image_folder import DatasetError
from data.sampler import EpochSampler
from models import create_model
from models.base_model import BaseModel
from models.coop import NonFiniteError
from models.calibration import CALIBRATION_IMAGES
from models.schedule import ADVERSARIAL, COOP_STAGE_DEFAULT, StageSchedule
from options.test_options import PRETRAINED_SHAPE, differing_options_hint
from options.train_options import TrainOptions
from util import distributed
from util.checkpoint import (CheckpointError, atomic_save, atomic_write_text, remove_stale_temp_files,
                              safe_load)
from util.run_log import RunLog
from util.runtime import ignore_interrupts_in_worker, keep_freed_memory
from util.visualizer import Visualizer

STATE_FILE = "{tag}_state.pth"


class Stop(Exception):
    """Raised at an iteration boundary after SIGINT/SIGTERM."""


class Trainer:
    """The training loop: epochs of iterations, logging, display, checkpoints, resume."""

    def __init__(self, opt: argparse.Namespace, options: TrainOptions):
        self.opt = opt
        self.run_dir = Path(opt.checkpoints_dir) / opt.name
        if opt.continue_train and not opt.pretrained_name and not self.has_checkpoint():  # before reading data
            raise CheckpointError(f"--continue_train: no checkpoint '{opt.epoch}' in {self.run_dir} "
                                  f"(no {STATE_FILE.format(tag=opt.epoch)}, no {opt.epoch}_net_G.pth) -- check "
                                  "--name, --checkpoints_dir and --epoch, or start without --continue_train")
        self.dist = distributed.setup(opt.gpu_ids)  # under torchrun: this rank, its device, the process group
        self.device = self.dist.device
        torch.manual_seed(opt.seed)

        self.dataset = create_dataset(opt)
        self.sampler = EpochSampler(len(self.dataset), batch_size=opt.batch_size, seed=opt.seed,
                                    shuffle=not opt.serial_batches, rank=self.dist.rank,
                                    world_size=self.dist.world_size)
        self.loader = DataLoader(self.dataset, batch_size=opt.batch_size, sampler=self.sampler,
                                 num_workers=opt.num_threads, pin_memory=self.device.type == "cuda",
                                 worker_init_fn=ignore_interrupts_in_worker,
                                 generator=torch.Generator(),  # keeps the global RNG untouched for resume
                                 persistent_workers=opt.num_threads > 0)
        self.iters_per_epoch = self.sampler.batches_per_epoch

        self.model = create_model(opt, self.device)
        first_epoch = opt.epoch_count or 1
        self.model.data_dependent_initialize(default_collate([self.dataset[(first_epoch, 0)]]))
        self.dist.seed_rank(opt.seed)  # identical networks above, distinct per-rank randomness below
        self.epoch, self.epoch_iter, self.iteration = first_epoch, 0, 0
        self.model.schedule = StageSchedule.from_epochs(coop_epochs=opt.coop_epochs,
                                                        iters_per_epoch=self.iters_per_epoch,
                                                        blend_iters=opt.coop_blend_iters)
        if opt.continue_train:
            self.resume()
        elif opt.pretrained_name:
            self.load_pretrained()
        if self.dist.is_main:  # after resume: a failed one leaves the run's recorded options as they were
            options.save(opt, "train_opt.txt")
            # dataroot absolute: test.py and export.py default to it from any folder
            recorded = {**vars(opt), "dataroot": str(Path(opt.dataroot).resolve())}
            # strict JSON: an unlimited --max_dataset_size is recorded as "inf", which the flag reads back
            recorded = {k: str(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in recorded.items()}
            atomic_write_text(self.run_dir / "train_opt.json",
                              json.dumps(recorded, indent=1, default=str, allow_nan=False))
            for path in remove_stale_temp_files(self.run_dir):
                print(f"removed {path.name}, left by a checkpoint write that was interrupted")
        self.dist.share_model(self.model.nets.values(), self.model.optimizers.values())
        self.log = RunLog(self.run_dir, resume_from=self.iteration if opt.continue_train else None,
                          enabled=self.dist.is_main)
        self.visualizer = Visualizer(opt, enabled=self.dist.is_main)
        self.evaluator = None
        if self.dist.is_main and opt.eval_freq:
            from util.evaluation import TrainingEvaluator  # torchvision + torch-fidelity: ~2 s CPU to import

            self.evaluator = TrainingEvaluator(opt, device=self.device, run_dir=self.run_dir,
                                               resume_from=self.iteration if opt.continue_train else None)
        self.stop_signal: int | None = None

    # -- state --------------------------------------------------------------------------------
    def save(self, tag: str | int) -> None:
        """Weights for test.py, then the single-file training state (written last).

        Called by every rank at the same iterations (it gathers their RNG states); rank 0 writes.
        """
        rng_ranks = self.dist.gather_rng_states()
        if not self.dist.is_main:
            return
        self.model.save_networks(self.run_dir, tag)
        state = {"model": self.model.state_dict(), "epoch": self.epoch, "epoch_iter": self.epoch_iter,
                 "iteration": self.iteration, "schedule": self.model.schedule.state_dict(),
                 "rng_cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        if self.dist.distributed:
            state["world_size"], state["rng_ranks"] = self.dist.world_size, rng_ranks
        atomic_save(state, self.run_dir / STATE_FILE.format(tag=tag))

    def has_checkpoint(self) -> bool:
        """Whether this run has checkpoint --epoch to resume: its state file, or (as CUT's) weights only."""
        return ((self.run_dir / STATE_FILE.format(tag=self.opt.epoch)).exists()
                or BaseModel.net_file(self.run_dir, self.opt.epoch, "G").exists())

    def resume(self) -> None:
        path = self.run_dir / STATE_FILE.format(tag=self.opt.epoch)
        if not self.has_checkpoint():  # only with --pretrained_name (checked in __init__): CUT's use of the pair
            self.load_pretrained()
            return
        if not path.exists():  # CUT-style resume from weights only
            try:
                self.model.load_networks(self.run_dir, self.opt.epoch, list(self.model.nets))
            except CheckpointError as err:
                raise CheckpointError(f"{err}{differing_options_hint(self.opt, keys=PRETRAINED_SHAPE)}") from err
            epoch = str(self.opt.epoch)
            if epoch.isdigit() and self.opt.epoch_count is None:  # N_net_*.pth ends epoch N: go on with N + 1
                self.epoch = int(epoch) + 1
            # The schedule counts iterations from epoch 1, so the cooperative stage does not run again.
            self.iteration = (self.epoch - 1) * self.iters_per_epoch
            print(f"resumed weights from {self.run_dir}/{self.opt.epoch}_net_*.pth: continuing at epoch "
                  f"{self.epoch} (iteration {self.iteration + 1}, {self.model.schedule.stage(self.iteration)} "
                  f"stage) with fresh optimizer state (no {path.name}); checkpoints saved from here on replace "
                  "this run's later ones")
            return
        state = safe_load(path, self.device)
        try:
            self.model.load_state_dict(state["model"])
        except CheckpointError as err:  # train_opt.json still holds the run's options (rewritten after this)
            raise CheckpointError(f"{err}{differing_options_hint(self.opt)}") from err
        self.epoch, self.epoch_iter, self.iteration = state["epoch"], state["epoch_iter"], state["iteration"]
        self.model.schedule = StageSchedule(**state["schedule"])
        torch.set_rng_state(state["rng_cpu"].cpu())
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"].cpu(), self.device)
        saved_world = state.get("world_size", 1)
        if saved_world == self.dist.world_size:
            self.dist.restore_rng(state.get("rng_ranks"))
        else:  # another process count splits the data differently: continue at the same share of the epoch
            self.epoch_iter = min(self.epoch_iter * saved_world // self.dist.world_size, self.iters_per_epoch)
            self.dist.seed_rank(self.opt.seed, self.iteration)
            print(f"{path.name} was written by {saved_world} process(es), this run has {self.dist.world_size}: "
                  f"continuing at batch {self.epoch_iter} of epoch {self.epoch}, fresh per-rank random streams")
        print(f"resumed from {path}: epoch {self.epoch}, iteration {self.iteration} "
              f"({self.model.schedule.stage(self.iteration)} stage)")

    def load_pretrained(self) -> None:
        """--pretrained_name: another run's G, D and F (this project's or the reference CUT's files);
        the optimizers and the CoopInit schedule built above stay fresh."""
        source = Path(self.opt.checkpoints_dir) / self.opt.pretrained_name
        files = [self.model.net_file(source, self.opt.epoch, name) for name in self.model.nets
                 if name not in self.model.optional_nets]
        missing = [path.name for path in files if not path.is_file()]
        if missing:
            raise CheckpointError(f"--pretrained_name {self.opt.pretrained_name}: no {', '.join(missing)} in {source} "
                                  "-- check --pretrained_name, --checkpoints_dir and --epoch")
        try:
            self.model.load_networks(source, self.opt.epoch, list(self.model.nets))
        except CheckpointError as err:
            hint = differing_options_hint(self.opt, name=self.opt.pretrained_name, keys=PRETRAINED_SHAPE)
            raise CheckpointError(f"--pretrained_name {self.opt.pretrained_name}: {err}{hint}") from err
        print(f"starting from the weights in {source}/{self.opt.epoch}_net_*.pth with fresh optimizers and "
              f"{self.model.schedule.coop_iters} cooperative (CoopInit) iterations")

    # -- loop ---------------------------------------------------------------------------------
    def request_stop(self, signum: int, _frame: object) -> None:
        self.stop_signal = signum

    def evaluate(self) -> None:
        """FID/KID of the test split now (rank 0); the best generator is kept as best_net_G.pth."""
        entry = self.evaluator.evaluate(self.model.inference_generator, epoch=self.epoch, iteration=self.iteration)
        self.log.message(f"(epoch: {self.epoch}, total: {self.iteration}) [eval] FID: {entry['fid']:.2f} "
                         f"KID: {entry['kid_mean']:.4f} ± {entry['kid_std']:.4f} ({entry['n_fake']} images)"
                         + (" -- new best, saved best_net_G.pth" if entry["best"] else ""))
        self.visualizer.plot_metrics(epoch=self.epoch, total_iters=self.iteration,
                                     metrics={"FID": entry["fid"], "KID x 100": 100 * entry["kid_mean"]})

    def warn_if_never_adversarial(self, *, last_iteration: int) -> None:
        """One warning when the adversarial stage would start after `last_iteration` (1-based): the run
        would end as CoopInit alone, which looks like a finished run but never trains G against D."""
        start = self.model.schedule.first_iteration(ADVERSARIAL)
        if start > last_iteration:
            self.log.message(
                f"warning: the adversarial stage would start at iteration {start}, after the run's last iteration "
                f"({last_iteration}), so this run trains with CoopInit only (--coop_epochs {self.opt.coop_epochs:g} "
                f"epochs, of {self.opt.n_epochs + self.opt.n_epochs_decay} in all) -- lower --coop_epochs (e.g. "
                f"{COOP_STAGE_DEFAULT}, a share of the run) or train longer (raise --n_epochs)")

    def run(self) -> None:
        opt = self.opt
        last_epoch = opt.n_epochs + opt.n_epochs_decay
        schedule = self.model.schedule
        self.log.message(f"{len(self.dataset)} images per epoch, {self.iters_per_epoch} iterations per epoch, "
                         f"device {self.device}; CoopInit: {schedule.coop_iters} cooperative iterations"
                         + (f", {schedule.blend_iters} blend iterations" if schedule.blend_iters else ""))
        total = (last_epoch - self.epoch + 1) * self.iters_per_epoch - self.epoch_iter
        if total <= 0:
            self.log.message(f"nothing to train: this run's schedule ends with epoch {last_epoch}, and it resumes "
                             f"at epoch {self.epoch} -- to train longer, add --n_epochs or --n_epochs_decay (with "
                             "--continue_train, the new values replace the recorded ones)")
            return
        self.warn_if_never_adversarial(last_iteration=self.iteration + total)
        with tqdm(total=total, desc="training", unit="it", dynamic_ncols=True, leave=False,
                  disable=not self.dist.is_main) as bar:
            while self.epoch <= last_epoch:
                self.model.set_learning_rate(self.epoch)
                self.run_epoch(bar)
                if self.evaluator is not None and self.evaluator.due(self.epoch):
                    self.evaluate()
                if self.epoch % opt.save_epoch_freq == 0 or self.epoch == last_epoch:
                    finished = self.epoch
                    if self.dist.is_main:  # before the state, which commits the epoch as done
                        self.model.save_networks(self.run_dir, finished)
                    self.epoch, self.epoch_iter = self.epoch + 1, 0  # the state says: start the next epoch
                    self.save("latest")
                    self.log.message(f"saved checkpoints at the end of epoch {finished} "
                                     f"(iteration {self.iteration})")
                else:
                    self.epoch, self.epoch_iter = self.epoch + 1, 0
        if self.iteration % opt.update_html_freq:  # the last images, so a short run has a page too
            self.visualizer.save_html(self.model.current_visuals(), epoch=last_epoch, total_iters=self.iteration,
                                      stage=schedule.stage(self.iteration - 1))
        self.log.message(f"training finished: {self.iteration} iterations, checkpoints in {self.run_dir}")

    def run_epoch(self, bar: tqdm) -> None:
        opt = self.opt
        self.sampler.start(self.epoch, self.epoch_iter)
        window_start, data_time, window_iters = time.perf_counter(), 0.0, 0
        fetch_start = time.perf_counter()
        for batch in self.batches():
            data_time += time.perf_counter() - fetch_start
            stage = self.model.schedule.stage(self.iteration)
            if self.iteration and stage != self.model.schedule.stage(self.iteration - 1):
                self.announce_switch(stage)  # before the step: an optimizer reset must precede it
            self.model.set_input(batch)
            try:
                self.model.optimize(self.iteration)
            except NonFiniteError as err:
                raise NonFiniteError(f"{err.quantity} at iteration {self.iteration + 1} (epoch {self.epoch}); "
                                     "no checkpoint was written for it") from err
            self.iteration += 1
            self.epoch_iter += 1
            window_iters += 1
            bar.update(1)
            if self.iteration % opt.print_freq == 0:
                now = time.perf_counter()
                losses = self.dist.mean_values(self.model.current_losses())  # over ranks: the effective batch
                self.log.log(epoch=self.epoch, iteration=self.iteration, epoch_iter=self.epoch_iter, stage=stage,
                             stage_start=self.model.schedule.first_iteration(stage), losses=losses,
                             sec_per_iter=(now - window_start) / window_iters, data_sec=data_time / window_iters)
                self.visualizer.plot_current_losses(epoch=self.epoch, total_iters=self.iteration, losses=losses,
                                                    stage=stage)
                window_start, data_time, window_iters = time.perf_counter(), 0.0, 0
            if self.iteration % opt.display_freq == 0:
                self.visualizer.display_current_results(self.model.current_visuals(), epoch=self.epoch,
                                                        total_iters=self.iteration, stage=stage)
            if self.iteration % opt.update_html_freq == 0:
                self.visualizer.save_html(self.model.current_visuals(), epoch=self.epoch,
                                          total_iters=self.iteration, stage=stage)
            if self.iteration % opt.save_latest_freq == 0:
                self.save(f"iter_{self.iteration}" if opt.save_by_iter else "latest")
            # Every rank stops at the same iteration, even if the signal reached only some of them.
            self.stop_signal = self.dist.max_int(self.stop_signal or 0) or None
            if self.stop_signal is not None:
                raise Stop
            fetch_start = time.perf_counter()

    def batches(self) -> Iterator[dict]:
        """The loader's batches. A SIGTERM sent to the whole process group also ends the data-loader
        workers, maybe before the batch the loop waits for: with a stop requested, that is the stop."""
        batches = iter(self.loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (RuntimeError, ConnectionError):  # "worker exited unexpectedly", or its pipe reset
                if self.stop_signal is None:
                    time.sleep(0.5)  # a group-wide signal may end a worker first: let our handler run
                if self.stop_signal is None:
                    raise
                raise Stop from None
            yield batch

    def announce_switch(self, stage: str) -> None:
        self.log.message(f"=== CoopInit: iteration {self.iteration + 1} (epoch {self.epoch}) starts the "
                         f"{stage} stage ===")
        # The same items on every rank (keyed by seed and epoch): the replicas stay identical.
        items = [self.dataset[(self.epoch, i)] for i in range(min(CALIBRATION_IMAGES, len(self.dataset)))]
        calibration = self.model.on_stage_switch(self.iteration, items)
        if calibration is not None:
            self.dist.share_model(self.model.nets.values(), [])  # GPU kernels may differ in the last bit: rank 0's
            self.log.message(f"=== CoopInit: D's outputs calibrated for --gan_mode {self.opt.gan_mode} on "
                             f"{len(items)} real and {len(items)} generated training images: raw scores x "
                             f"{calibration.scale:.4g} {calibration.shift:+.4g}; D's loss on them "
                             f"{calibration.loss_before:.4g} -> {calibration.loss_after:.4g} ===")


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    options = TrainOptions()
    opt = options.parse(argv)
    if distributed.is_main_process():
        print(options.format(opt))
    try:
        trainer = Trainer(opt, options)
    except (DatasetError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the run folder cannot be created or written
        print(f"error: {err} -- --checkpoints_dir must be a writable folder with free space", file=sys.stderr)
        return 2
    launcher = ("torchrun <same torchrun flags> train.py" if trainer.dist.distributed
                else f"{shlex.quote(sys.executable)} train.py")
    args = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    resume = f"{launcher} {shlex.join(args + ([] if opt.continue_train else ['--continue_train']))}"
    # Restored on return, so train.main() called in a process (tests, notebooks) leaves Ctrl-C working.
    previous = {signum: signal.signal(signum, trainer.request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            trainer.run()
        except Stop:  # nested: a failing save here is reported like any other error below
            trainer.save("latest")
            trainer.dist.barrier()  # rank 0 has written before any rank exits (torchrun then stops the rest)
            name = signal.Signals(trainer.stop_signal).name
            trainer.log.message(f"{name}: saved the latest checkpoint at iteration {trainer.iteration}. "
                                f"Resume with: {resume}")
            return 128 + trainer.stop_signal
    except (NonFiniteError, DatasetError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # disk full, or the run folder gone or read-only, while writing logs or pages
        print(f"error: {err} -- saved checkpoints are unchanged; fix this, then resume with: {resume}",
              file=sys.stderr)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
