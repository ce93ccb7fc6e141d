"""Train CUT / FastCUT with CoopInit on an unpaired dataset.

    python train.py --dataroot ./datasets/horse2zebra --name h2z

Writes checkpoints/NAME/: train_opt.txt, loss_log.txt, loss_log.jsonl, {latest,N}_net_{G,D,F}.pth,
latest_state.pth (full training state for --continue_train) and web/index.html.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, default_collate
from tqdm import tqdm

from data import create_dataset
from data.image_folder import DatasetError
from data.sampler import EpochSampler
from models import create_model
from models.coop import NonFiniteError
from models.schedule import ADVERSARIAL, StageSchedule
from options.train_options import TrainOptions
from util.checkpoint import CheckpointError, atomic_save, safe_load
from util.run_log import RunLog
from util.runtime import ignore_interrupts_in_worker, select_device
from util.visualizer import Visualizer

STATE_FILE = "{tag}_state.pth"


class Stop(Exception):
    """Raised at an iteration boundary after SIGINT/SIGTERM."""


class Trainer:
    """The training loop: epochs of iterations, logging, display, checkpoints, resume."""

    def __init__(self, opt: argparse.Namespace, options: TrainOptions):
        self.opt = opt
        self.run_dir = Path(opt.checkpoints_dir) / opt.name
        self.device = select_device(opt.gpu_ids)
        torch.manual_seed(opt.seed)
        options.save(opt, "train_opt.txt")
        (self.run_dir / "train_opt.json").write_text(json.dumps(vars(opt), indent=1, default=str))

        self.dataset = create_dataset(opt)
        self.sampler = EpochSampler(len(self.dataset), batch_size=opt.batch_size, seed=opt.seed,
                                    shuffle=not opt.serial_batches)
        self.loader = DataLoader(self.dataset, batch_size=opt.batch_size, sampler=self.sampler,
                                 num_workers=opt.num_threads, pin_memory=self.device.type == "cuda",
                                 worker_init_fn=ignore_interrupts_in_worker,
                                 generator=torch.Generator(),  # keeps the global RNG untouched for resume
                                 persistent_workers=opt.num_threads > 0)
        self.iters_per_epoch = self.sampler.batches_per_epoch

        self.model = create_model(opt, self.device)
        self.model.data_dependent_initialize(default_collate([self.dataset[(opt.epoch_count, 0)]]))
        self.epoch, self.epoch_iter, self.iteration = opt.epoch_count, 0, 0
        self.model.schedule = StageSchedule.from_epochs(coop_epochs=opt.coop_epochs,
                                                        iters_per_epoch=self.iters_per_epoch,
                                                        blend_iters=opt.coop_blend_iters)
        if opt.continue_train:
            self.resume()
        self.log = RunLog(self.run_dir, resume_from=self.iteration if opt.continue_train else None)
        self.visualizer = Visualizer(opt)
        self.stop_signal: int | None = None

    # -- state --------------------------------------------------------------------------------
    def save(self, tag: str | int) -> None:
        """Weights for test.py, then the single-file training state (written last)."""
        self.model.save_networks(self.run_dir, tag)
        state = {"model": self.model.state_dict(), "epoch": self.epoch, "epoch_iter": self.epoch_iter,
                 "iteration": self.iteration, "schedule": self.model.schedule.state_dict(),
                 "rng_cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        atomic_save(state, self.run_dir / STATE_FILE.format(tag=tag))

    def resume(self) -> None:
        path = self.run_dir / STATE_FILE.format(tag=self.opt.epoch)
        if not path.exists():  # CUT-style resume from weights only, at --epoch_count
            self.model.load_networks(self.run_dir, self.opt.epoch, list(self.model.nets))
            print(f"resumed weights from {self.run_dir}/{self.opt.epoch}_net_*.pth at epoch {self.epoch} "
                  f"(no {path.name}: optimizer state starts fresh)")
            return
        state = safe_load(path, self.device)
        self.model.load_state_dict(state["model"])
        self.epoch, self.epoch_iter, self.iteration = state["epoch"], state["epoch_iter"], state["iteration"]
        self.model.schedule = StageSchedule(**state["schedule"])
        torch.set_rng_state(state["rng_cpu"].cpu())
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"].cpu(), self.device)
        print(f"resumed from {path}: epoch {self.epoch}, iteration {self.iteration} "
              f"({self.model.schedule.stage(self.iteration)} stage)")

    # -- loop ---------------------------------------------------------------------------------
    def request_stop(self, signum: int, _frame: object) -> None:
        self.stop_signal = signum

    def run(self) -> None:
        opt = self.opt
        last_epoch = opt.n_epochs + opt.n_epochs_decay
        schedule = self.model.schedule
        self.log.message(f"{len(self.dataset)} images per epoch, {self.iters_per_epoch} iterations per epoch, "
                         f"device {self.device}; CoopInit: {schedule.coop_iters} cooperative iterations"
                         + (f", {schedule.blend_iters} blend iterations" if schedule.blend_iters else ""))
        total = (last_epoch - self.epoch + 1) * self.iters_per_epoch - self.epoch_iter
        with tqdm(total=max(total, 0), desc="training", unit="it", dynamic_ncols=True, leave=False) as bar:
            while self.epoch <= last_epoch:
                self.model.set_learning_rate(self.epoch)
                self.run_epoch(bar)
                if self.epoch % opt.save_epoch_freq == 0 or self.epoch == last_epoch:
                    finished = self.epoch
                    self.epoch, self.epoch_iter = self.epoch + 1, 0  # the state says: start the next epoch
                    self.save("latest")
                    self.model.save_networks(self.run_dir, finished)
                    self.log.message(f"saved checkpoints at the end of epoch {finished} "
                                     f"(iteration {self.iteration})")
                else:
                    self.epoch, self.epoch_iter = self.epoch + 1, 0
        self.log.message(f"training finished: {self.iteration} iterations, checkpoints in {self.run_dir}")

    def run_epoch(self, bar: tqdm) -> None:
        opt = self.opt
        self.sampler.start(self.epoch, self.epoch_iter)
        window_start, data_time, window_iters = time.perf_counter(), 0.0, 0
        fetch_start = time.perf_counter()
        for batch in self.loader:
            data_time += time.perf_counter() - fetch_start
            self.model.set_input(batch)
            try:
                stage = self.model.optimize(self.iteration)
            except NonFiniteError as err:
                raise NonFiniteError(f"{err.quantity} at iteration {self.iteration + 1} (epoch {self.epoch}); "
                                     "no checkpoint was written for it") from err
            if self.iteration and stage != self.model.schedule.stage(self.iteration - 1):
                self.announce_switch(stage)
            self.iteration += 1
            self.epoch_iter += 1
            window_iters += 1
            bar.update(1)
            if self.iteration % opt.print_freq == 0:
                now = time.perf_counter()
                losses = self.model.current_losses()
                self.log.log(epoch=self.epoch, iteration=self.iteration, epoch_iter=self.epoch_iter, stage=stage,
                             losses=losses, sec_per_iter=(now - window_start) / window_iters,
                             data_sec=data_time / window_iters)
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
                self.save("latest")
            if self.stop_signal is not None:
                raise Stop
            fetch_start = time.perf_counter()

    def announce_switch(self, stage: str) -> None:
        self.log.message(f"=== CoopInit: iteration {self.iteration + 1} (epoch {self.epoch}) starts the "
                         f"{stage} stage ===")
        if stage == ADVERSARIAL:
            self.model.on_stage_switch()


def main(argv: list[str] | None = None) -> int:
    options = TrainOptions()
    opt = options.parse(argv)
    print(options.format(opt))
    try:
        trainer = Trainer(opt, options)
    except (DatasetError, CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, trainer.request_stop)
    try:
        trainer.run()
    except Stop:
        trainer.save("latest")
        name = signal.Signals(trainer.stop_signal).name
        trainer.log.message(f"{name}: saved the latest checkpoint at iteration {trainer.iteration}. Resume with: "
                            f"python train.py --dataroot {opt.dataroot} --name {opt.name} --continue_train")
        return 128 + trainer.stop_signal
    except (NonFiniteError, DatasetError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
