"""PatchNCE loss against hand computation, and the patch sampler / projection head (netF)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models.patchnce import PatchSampleF, patch_nce_loss

T = 0.5
MASKED = -10.0  # a patch's own key, removed from its negatives


def info_nce(positive: float, negatives: list[float]) -> float:
    """-log(exp(pos/T) / (exp(pos/T) + sum exp(neg/T))), the masked entry included as CUT does."""
    terms = [math.exp(positive / T)] + [math.exp(n / T) for n in negatives]
    return -math.log(terms[0] / sum(terms))


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


# Two images x two patches of 3-d unit vectors.
QUERIES = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.6, 0.0, 0.8]]
KEYS = [[0.6, 0.8, 0.0], [0.0, 0.6, 0.8], [0.8, 0.0, 0.6], [0.0, 1.0, 0.0]]


def test_two_patches_by_hand():
    query, key = torch.tensor(QUERIES[:2]), torch.tensor(KEYS[:2])
    loss = patch_nce_loss(query, key, temperature=T, batch_size=1)
    # q0.k0 = 0.6 (positive), q0.k1 = 0; q1.k1 = 0.6 (positive), q1.k0 = 0.8.
    expected = [info_nce(0.6, [MASKED, 0.0]), info_nce(0.6, [0.8, MASKED])]
    assert loss.tolist() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("from_minibatch", [False, True])
def test_batch_of_two_negatives_per_image_or_from_the_whole_batch(from_minibatch):
    loss = patch_nce_loss(torch.tensor(QUERIES), torch.tensor(KEYS), temperature=T, batch_size=2,
                          negatives_from_minibatch=from_minibatch)
    expected = []
    for i, q in enumerate(QUERIES):
        # Candidates: the keys of the same image, or of every image in the batch.
        candidates = range(4) if from_minibatch else range(2 * (i // 2), 2 * (i // 2) + 2)
        negatives = [MASKED if j == i else dot(q, KEYS[j]) for j in candidates]
        expected.append(info_nce(dot(q, KEYS[i]), negatives))
    assert loss.tolist() == pytest.approx(expected, rel=1e-5)
    other_choice = patch_nce_loss(torch.tensor(QUERIES), torch.tensor(KEYS), temperature=T, batch_size=2,
                                  negatives_from_minibatch=not from_minibatch)
    assert not torch.allclose(loss, other_choice)


def test_gradient_flows_to_query_only():
    query = torch.nn.functional.normalize(torch.randn(8, 5), dim=1).requires_grad_(True)
    key = torch.nn.functional.normalize(torch.randn(8, 5), dim=1).requires_grad_(True)
    patch_nce_loss(query, key, temperature=0.07, batch_size=2).mean().backward()
    assert key.grad is None
    assert query.grad is not None and query.grad.abs().sum() > 0


def test_loss_is_lower_when_queries_match_their_keys():
    key = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    matched = patch_nce_loss(key.clone(), key, temperature=0.07, batch_size=1).mean()
    shuffled = patch_nce_loss(key.roll(1, dims=0), key, temperature=0.07, batch_size=1).mean()
    assert matched < 0.1 < shuffled


def features(batch=2):
    return [torch.randn(batch, 3, 6, 6), torch.randn(batch, 8, 4, 4), torch.randn(batch, 8, 2, 2)]


def test_sampler_creates_mlps_lazily_with_the_feature_widths():
    sampler = PatchSampleF(use_mlp=True, nc=16)
    assert not sampler.initialized and len(list(sampler.parameters())) == 0
    out, ids = sampler(features(), num_patches=5)
    assert sampler.initialized
    widths = [[(m.in_features, m.out_features) for m in mlp if isinstance(m, nn.Linear)] for mlp in sampler.mlps]
    assert widths == [[(3, 16), (16, 16)], [(8, 16), (16, 16)], [(8, 16), (16, 16)]]
    # 5 patches per image, or all of them when the map is smaller (2x2 = 4).
    assert [tuple(o.shape) for o in out] == [(10, 16), (10, 16), (8, 16)]
    assert [len(i) for i in ids] == [5, 5, 4]
    params_before = [p.clone() for p in sampler.parameters()]
    sampler(features(), num_patches=5)
    assert all(torch.equal(a, b) for a, b in zip(params_before, sampler.parameters()))  # created once


@pytest.mark.parametrize("use_mlp", [True, False])
def test_sampler_outputs_unit_vectors(use_mlp):
    out, _ = PatchSampleF(use_mlp=use_mlp, nc=16)(features(), num_patches=7)
    for rows in out:
        torch.testing.assert_close(rows.norm(dim=1), torch.ones(rows.shape[0]))


def test_query_and_key_use_the_same_locations():
    torch.manual_seed(0)
    sampler = PatchSampleF(use_mlp=False)
    feats_k = features()
    pooled_k, ids_k = sampler(feats_k, num_patches=5)
    pooled_q, ids_q = sampler(feats_k, num_patches=5, patch_ids=ids_k)
    assert all(torch.equal(a, b) for a, b in zip(ids_q, ids_k))
    for q, k in zip(pooled_q, pooled_k):
        torch.testing.assert_close(q, k)
    # Row n * P + p is image n at location ids[p] (flattened row-major).
    feat, ids = feats_k[1], ids_k[1]
    location = ids[2].item()
    expected = torch.nn.functional.normalize(feat[1, :, location // 4, location % 4], dim=0)
    torch.testing.assert_close(pooled_k[1][1 * 5 + 2], expected)
    _, fresh_ids = sampler(feats_k, num_patches=5)
    assert not all(torch.equal(a, b) for a, b in zip(fresh_ids[:2], ids_k[:2]))  # else drawn anew
