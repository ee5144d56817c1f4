"""Sharded runs under torchrun (CPU ranks over gloo, on a port the OS hands out) equal a one-process
run bit for bit: with more ranks than batches, and when `--resume` continues an interrupted run."""

from __future__ import annotations

import signal

import pytest
from interrupt import N_BATCHES, assert_same_run, torchrun, xai

from xaibench.distributed import Ranks


def test_shards_are_disjoint_and_cover_every_batch():
    batches = list(range(11))
    shards = [Ranks(rank=r, world=3).shard(batches) for r in range(3)]
    assert sorted(sum(shards, [])) == batches
    assert not set(shards[0]) & set(shards[1])
    assert Ranks(rank=3, world=4).shard([0, 1, 2]) == []  # more ranks than batches: an idle rank


@pytest.mark.slow
def test_more_ranks_than_batches_equal_one_process(reference_run, tmp_path):
    cfg, ref = reference_run
    ranks = N_BATCHES + 1  # the last rank gets no batch
    res = torchrun(ranks, "run", str(cfg), "--out", str(tmp_path / "sharded"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("run folder:") == 1  # only rank 0, which holds the merged files, prints the leaderboard
    assert_same_run(tmp_path / "sharded", ref, f"{ranks} ranks")


@pytest.mark.slow
def test_resume_under_torchrun_equals_one_process(reference_run, tmp_path):
    cfg, ref = reference_run
    out = tmp_path / "run"
    res = xai("run", str(cfg), "-q", "--out", str(out), kill=("after_batch", 0))  # batch 0 done, batch 1 not
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    res = torchrun(2, "run", str(cfg), "-q", "--out", str(out), "--resume")  # rank 1 computes batch 1, rank 0 none
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_run(out, ref, "resumed under torchrun")
