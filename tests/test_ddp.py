"""Multi-process training under torchrun (2 CPU processes, gloo).

Every run is a real `torchrun --standalone --nproc_per_node 2` launch of THIS file: its __main__
part (the worker) wraps the model's set_input/optimize to record the images each rank trained on
and to inject faults, calls train.main, then dumps the rank's final weights. Production code has
no test hooks.

3 epochs x 4 iterations (8 toy images / (batch 1 x 2 ranks)); CoopInit switches to the adversarial
stage after 2 iterations; `latest` is saved every 6 iterations.
    full     uninterrupted; rank 1 gets its own --checkpoints_dir, which must stay empty
    crashed  rank 1's discriminator loss turns NaN in iteration 8: every process exits (none waits
             forever on the failed one); the checkpoint of iteration 6 survives, the log holds 1..7
    resumed  `crashed` continued with --continue_train; SIGTERM reaches rank 1 only, during the last
             iteration: rank 0 stops at the same iteration and saves. Must end exactly where `full` ended.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
RANKS = 2
ITERS_PER_EPOCH = 4
TOTAL_ITERS = 3 * ITERS_PER_EPOCH
SAVED_AT = 6  # --save_latest_freq
NAN_AT = 8
FLAGS = ["--gpu_ids", "-1", "--display_id", "0", "--num_threads", "0", "--load_size", "32", "--crop_size", "32",
         "--ngf", "8", "--ndf", "8", "--netG", "resnet_4blocks", "--netF_nc", "16", "--num_patches", "16",
         "--max_dataset_size", "8", "--n_epochs", "2", "--n_epochs_decay", "1", "--coop_epochs", "0.5",
         "--coop_langevin_steps", "2", "--print_freq", "1", "--save_latest_freq", str(SAVED_AT),
         "--save_epoch_freq", "10"]
LAUNCH_TIMEOUT = 120  # seconds; a deadlock fails the test instead of hanging it


def torchrun(tmp: Path, name: str, train_args: list[str], **worker: object) -> dict:
    """Launch 2 worker processes; returns exit code, console output and each rank's dump."""
    out = tmp / f"{name}_dumps"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "DDP_TEST_WORKER": json.dumps({"out": str(out), **worker})}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
         "--nproc_per_node", str(RANKS), "--monitor_interval", "0.2", __file__, *train_args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    dumps = [torch.load(path, weights_only=True) if path.exists() else None
             for path in (out / f"rank{rank}.pt" for rank in range(RANKS))]
    return {"code": proc.returncode, "output": proc.stdout + proc.stderr, "dumps": dumps}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, toy_dataroot) -> dict:
    tmp = tmp_path_factory.mktemp("ddp")
    ckpt = tmp / "checkpoints"

    def args(name: str, *extra: str) -> list[str]:
        return ["--dataroot", str(toy_dataroot), *FLAGS, "--checkpoints_dir", str(ckpt), "--name", name, *extra]

    with ThreadPoolExecutor(max_workers=1) as pool:  # `full` alongside the other two, which run in turn
        full = pool.submit(torchrun, tmp, "full", args("full"), rank1_checkpoints_dir=str(tmp / "rank1"))
        crashed = torchrun(tmp, "crashed", args("crashed"), nan_at=[1, NAN_AT])
        shutil.copytree(ckpt / "crashed", ckpt / "resumed")
        resumed = torchrun(tmp, "resumed", args("resumed", "--continue_train"), sigterm_at=[1, TOTAL_ITERS])
        return {"full": full.result(), "crashed": crashed, "resumed": resumed, "ckpt": ckpt,
                "rank1_dir": tmp / "rank1", "flags": args("crashed")}


def assert_same_weights(a: dict[str, dict], b: dict[str, dict]) -> None:
    assert a.keys() == b.keys()
    for net in a:
        assert a[net].keys() == b[net].keys()
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"net {net}: {key} differs"


def logged_iters(run_dir: Path) -> list[int]:
    return [json.loads(line)["iter"] for line in (run_dir / "loss_log.jsonl").read_text().splitlines()]


def test_replicas_stay_identical_through_both_stages(runs):
    full = runs["full"]
    assert full["code"] == 0, full["output"][-3000:]
    rank0, rank1 = full["dumps"]
    assert rank0["iteration"] == rank1["iteration"] == TOTAL_ITERS
    assert rank0["stages"] == rank1["stages"] == ["coop"] * 2 + ["adversarial"] * (TOTAL_ITERS - 2)
    assert_same_weights(rank0["nets"], rank1["nets"])
    saved = torch.load(runs["ckpt"] / "full" / "latest_net_G.pth", weights_only=True)
    assert_same_weights({"G": saved}, {"G": rank1["nets"]["G"]})


def test_each_rank_trains_on_its_own_share_of_the_data(runs):
    rank0, rank1 = (dump["seen"] for dump in runs["full"]["dumps"])
    assert len(rank0) == len(rank1) == TOTAL_ITERS
    for epoch in range(3):
        window = slice(epoch * ITERS_PER_EPOCH, (epoch + 1) * ITERS_PER_EPOCH)
        a0, a1 = ({step["A"] for step in seen[window]} for seen in (rank0, rank1))
        assert not a0 & a1 and len(a0 | a1) == 8  # disjoint halves that cover the epoch
    # B partners come from per-(seed, epoch, index) generators: distinct items, distinct draws.
    assert [step["B"] for step in rank0] != [step["B"] for step in rank1]


def test_only_rank0_writes(runs):
    run_dir = runs["ckpt"] / "full"
    assert {"loss_log.jsonl", "loss_log.txt", "train_opt.txt", "latest_state.pth", "latest_net_G.pth",
            "3_net_G.pth"} <= {p.name for p in run_dir.iterdir()}
    assert not runs["rank1_dir"].exists()  # rank 1's --checkpoints_dir: nothing written, not even created
    assert logged_iters(run_dir) == list(range(1, TOTAL_ITERS + 1))
    assert runs["full"]["output"].count("training finished") == 1


def test_nan_on_one_rank_ends_every_process(runs):
    crashed = runs["crashed"]  # returned within LAUNCH_TIMEOUT: no rank waited forever on the failed one
    assert crashed["code"] != 0
    assert f"non-finite discriminator loss at iteration {NAN_AT}" in crashed["output"]
    assert crashed["dumps"][1]["iteration"] == NAN_AT - 1
    state = torch.load(runs["ckpt"] / "crashed" / "latest_state.pth", weights_only=True)
    assert state["iteration"] == SAVED_AT and len(state["rng_ranks"]) == RANKS
    assert logged_iters(runs["ckpt"] / "crashed") == list(range(1, NAN_AT))


def test_resume_continues_exactly_and_a_signal_to_one_rank_stops_all(runs):
    resumed = runs["resumed"]
    assert resumed["code"] != 0, resumed["output"][-3000:]  # workers exit 128 + SIGTERM
    assert f"SIGTERM: saved the latest checkpoint at iteration {TOTAL_ITERS}" in resumed["output"]
    assert [len(dump["seen"]) for dump in resumed["dumps"]] == [TOTAL_ITERS - SAVED_AT] * RANKS
    assert logged_iters(runs["ckpt"] / "resumed") == list(range(1, TOTAL_ITERS + 1))  # 7 logged once
    # Same data, optimizer state and per-rank random streams: bit-identical to the uninterrupted run.
    for rank in range(RANKS):
        assert_same_weights(resumed["dumps"][rank]["nets"], runs["full"]["dumps"][rank]["nets"])


def test_resume_with_another_process_count(runs, tmp_path):
    import train

    shutil.copytree(runs["ckpt"] / "crashed", tmp_path / "single")
    argv = [*runs["flags"], "--checkpoints_dir", str(tmp_path), "--name", "single", "--continue_train",
            "--n_epochs_decay", "0"]
    # 6 iterations of 4 per epoch = batch 4 of 8 in epoch 2 for one process: 4 more iterations.
    assert train.main(argv) == 0
    assert logged_iters(tmp_path / "single") == list(range(1, SAVED_AT + 4 + 1))


# -- the worker, run by torchrun --------------------------------------------------------------
def _worker(train_args: list[str]) -> int:
    config = json.loads(os.environ["DDP_TEST_WORKER"])
    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    import train
    from models.cut_model import CUTModel

    if rank == 1 and "rank1_checkpoints_dir" in config:
        train_args = [*train_args, "--checkpoints_dir", config["rank1_checkpoints_dir"]]
    seen: list[dict] = []
    trainers: list = []
    set_input, optimize, run = CUTModel.set_input, CUTModel.optimize, train.Trainer.run

    def recording_set_input(model: CUTModel, batch: dict) -> None:
        model.test_paths = (batch["A_paths"][0], batch["B_paths"][0])
        set_input(model, batch)

    def faulty_optimize(model: CUTModel, iteration: int) -> str:
        if [rank, iteration + 1] == config.get("sigterm_at"):
            os.kill(os.getpid(), signal.SIGTERM)  # handled at the end of this iteration
        if [rank, iteration + 1] == config.get("nan_at"):
            model.real_B = model.real_B * float("nan")
        stage = optimize(model, iteration)
        seen.append({"A": model.test_paths[0], "B": model.test_paths[1], "stage": stage})
        return stage

    def keep_trainer(trainer: train.Trainer) -> None:
        trainers.append(trainer)
        run(trainer)

    CUTModel.set_input, CUTModel.optimize, train.Trainer.run = recording_set_input, faulty_optimize, keep_trainer
    # main() handles SIGTERM while it runs, then restores this: torchrun's SIGTERM, sent once the
    # other rank has exited 143, must not cut the dump below short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        return train.main(train_args)
    finally:
        if trainers:
            torch.save({"iteration": trainers[0].iteration, "seen": [{"A": s["A"], "B": s["B"]} for s in seen],
                        "stages": [s["stage"] for s in seen],
                        "nets": {name: net.state_dict() for name, net in trainers[0].model.nets.items()}},
                       Path(config["out"]) / f"rank{rank}.pt")


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
