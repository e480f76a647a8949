"""Muon + AdamW: orthogonalization, AdamW equal to torch's, Muon descends, the param split, resume."""

import copy

import pytest
import torch

from nanoparl.model import GPT, GPTConfig
from nanoparl.optim import MuonAdamW, make_optimizer, orthogonalize


@pytest.mark.parametrize("shape", [(32, 96), (96, 32), (40, 40)])
def test_orthogonalize_flattens_the_singular_values(shape):
    torch.manual_seed(0)
    k = min(shape)
    U = torch.linalg.qr(torch.randn(shape[0], k))[0]
    V = torch.linalg.qr(torch.randn(shape[1], k))[0]
    G = U @ torch.diag(torch.logspace(-1.5, 0.5, k)) @ V.T  # singular values 0.03 .. 3
    O = orthogonalize(G)
    s = torch.linalg.svdvals(O)
    # the quintic iteration lands singular values in a band around 1, not exactly on it
    assert s.min() > 0.5 and s.max() < 1.3, (s.min(), s.max())
    assert (O - U @ V.T).norm() < 0.5 * (U @ V.T).norm()  # and the directions are G's


def test_adamw_groups_match_torch_adamw():
    torch.manual_seed(0)
    w0 = torch.randn(8, 5)
    ours, ref = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    opt = MuonAdamW([dict(params=[ours], lr=1e-2, weight_decay=0.1)])
    torch_opt = torch.optim.AdamW([ref], lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8)
    for step in range(5):
        g = torch.randn(8, 5)
        for p, o in ((ours, opt), (ref, torch_opt)):
            p.grad = g.clone()
            o.step()
    assert (ours - ref).abs().max() < 1e-6


def test_muon_descends_a_least_squares_problem():
    torch.manual_seed(0)
    A = torch.randn(64, 16)
    B = A @ (0.3 * torch.randn(16, 24))  # reachable: the optimum has loss 0
    W = torch.nn.Parameter(torch.zeros(16, 24))
    opt = MuonAdamW([dict(params=[W], lr=0.05, muon=True)])
    losses = []
    for _ in range(100):
        loss = ((A @ W - B) ** 2).mean()
        losses.append(loss.item())
        W.grad = torch.autograd.grad(loss, W)[0]
        opt.step()
    assert losses[-1] < 0.05 * losses[0], (losses[0], losses[-1])


def test_muon_refuses_vectors():
    with pytest.raises(ValueError, match="2-D"):
        MuonAdamW([dict(params=[torch.nn.Parameter(torch.zeros(4))], lr=0.02, muon=True)])


def test_make_optimizer_puts_block_matrices_on_muon_and_resumes():
    model = GPT(GPTConfig(vocab_size=50, n_layer=1, n_head=2, n_kv_head=1, n_embd=16, intermediate_size=32,
                          block_size=32, qk_norm=True))
    opt = make_optimizer(model, 1e-3, 0.1, muon_lr=0.02)
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for g in opt.param_groups if g["muon"] for p in g["params"]}
    assert muon == {n for n, p in model.named_parameters() if n.startswith("layers.") and p.dim() == 2}
    assert {"embed_tokens.weight", "lm_head.weight"}.isdisjoint(muon)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    idx = torch.randint(0, 50, (2, 9))
    model(idx, targets=idx)[1].backward()
    opt.step()
    # a second optimizer loaded from the first's state takes the same next step
    twin = GPT(model.config)
    twin.load_state_dict(model.state_dict())
    opt2 = make_optimizer(twin, 1e-3, 0.1, muon_lr=0.02)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as from disk: no shared tensors
    for m, o in ((model, opt), (twin, opt2)):
        o.zero_grad()
        m(idx, targets=idx)[1].backward()
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))
    assert all(g["base_lr"] == g["lr"] for g in opt2.param_groups)
