"""In-training evaluation (--eval_freq): FID/KID of the translated test split, and the best checkpoint.

Every N epochs the generator translates DATAROOT/testA (as test.py would: resized to the crop
size, no flip), FID/KID are computed against DATAROOT/testB, the result is appended to
checkpoints/NAME/eval_log.jsonl, and when FID improves the generator is saved as
best_net_G.pth with its epoch and scores in best.json (papers report the best score seen).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from data.single_dataset import SingleDataset
from metrics.fid_kid import InceptionFeatures, fid_kid
from util.checkpoint import atomic_save, cpu_state_dict
from util.run_log import EVAL_LOG, read_jsonl

BEST_JSON = "best.json"


class TrainingEvaluator:
    """Scores the generator on the test split every `opt.eval_freq` epochs (0 = never)."""

    def __init__(self, opt: argparse.Namespace, *, device: torch.device, run_dir: Path, resume_from: int | None):
        self.every, self.run_dir, self.device = opt.eval_freq, Path(run_dir), device
        limit = opt.eval_max_images or float("inf")
        source_opt = argparse.Namespace(**{**vars(opt), "phase": "test", "preprocess": "resize_and_crop",
                                           "load_size": opt.crop_size, "no_flip": True, "max_dataset_size": limit,
                                           "dataset_mode": "single"})
        target_opt = argparse.Namespace(**{**vars(source_opt), "direction": "BtoA" if opt.direction == "AtoB"
                                           else "AtoB"})
        self.sources = SingleDataset(source_opt)
        self.targets = SingleDataset(target_opt)
        self.batch_size = max(opt.batch_size, 8)
        self.inception = InceptionFeatures(device)
        # Real features are computed once per run: the test split does not change while training.
        self.real_features = self._features(self.targets, generator=None)
        entries = [e for e in read_jsonl(self.run_dir / EVAL_LOG) if resume_from is not None and e["iter"] <= resume_from]
        (self.run_dir / EVAL_LOG).write_text("".join(json.dumps(e) + "\n" for e in entries))
        self.best = min(entries, key=lambda e: e["fid"]) if entries else None

    def due(self, epoch: int) -> bool:
        return epoch % self.every == 0

    @torch.inference_mode()
    def _features(self, dataset: SingleDataset, generator: torch.nn.Module | None) -> np.ndarray:
        chunks = []
        for batch in DataLoader(dataset, batch_size=self.batch_size, shuffle=False):
            images = batch["A"].to(self.device)
            chunks.append(self.inception.from_tensors(images if generator is None else generator(images)))
        return np.concatenate(chunks)

    def evaluate(self, generator: torch.nn.Module, *, epoch: int, iteration: int) -> dict:
        """Translate, score, log; save best_net_G.pth when FID improves. Returns the scores."""
        was_training = generator.training
        generator.eval()
        try:
            fake_features = self._features(self.sources, generator)
        finally:
            generator.train(was_training)
        scores = fid_kid(self.real_features, fake_features)
        entry = {"epoch": epoch, "iter": iteration, "fid": scores["fid"], "kid_mean": scores["kid_mean"],
                 "kid_std": scores["kid_std"], "n_fake": scores["n_fake"], "n_real": scores["n_real"]}
        with open(self.run_dir / EVAL_LOG, "a") as log:
            log.write(json.dumps(entry) + "\n")
        entry["best"] = self.best is None or entry["fid"] < self.best["fid"]
        if entry["best"]:
            self.best = entry
            atomic_save(cpu_state_dict(generator), self.run_dir / "best_net_G.pth")
            (self.run_dir / BEST_JSON).write_text(json.dumps(entry, indent=1) + "\n")
        return entry
