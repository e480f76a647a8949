"""Muon for the hidden matrices, AdamW for everything else, in one torch optimizer.

Muon (Jordan et al., 2024) takes the momentum of a weight matrix's gradient and replaces it by the
nearest semi-orthogonal matrix (all singular values 1), computed with a few Newton-Schulz
iterations. Every direction of the update then moves at the same rate, where Adam's update is
dominated by a few large singular directions. It is meant for the 2-D weights inside the
transformer blocks; the embedding, the lm_head and the norm gains keep AdamW.

Why it is here: on the cpu data a 1M-parameter model trained from scratch with AdamW never learned
to copy a number from its context into a call within 1,800 steps; with Muon on the hidden matrices
(plus QK-norm and a short system prompt) the copy circuit appears within a few hundred steps
(README, "Teaching a tiny model to copy").

One optimizer object (not two) keeps checkpoints and resume unchanged: its state_dict holds both
kinds of state. Every param group carries its own base lr (`base_lr`); the training loop multiplies
it by the schedule's factor.
"""

import torch


@torch.no_grad()
def orthogonalize(G, steps=5):
    """The semi-orthogonal matrix nearest to G (G = U S V^T -> ~U V^T), by a quintic Newton-Schulz
    iteration whose coefficients (from the Muon write-up) push singular values towards [0.7, 1.2]
    fast rather than to exactly 1: good enough for an update direction, and 5 small matmuls.
    G: (m, n) float32 -> (m, n)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G / (G.norm() + 1e-7)  # singular values into [0, 1], where the iteration converges
    tall = X.shape[0] > X.shape[1]
    if tall:  # iterate on the wide orientation: X X^T is the smaller Gram matrix
        X = X.T
    for _ in range(steps):
        A = X @ X.T                      # (m, m)
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if tall else X


class MuonAdamW(torch.optim.Optimizer):
    """Param groups with muon=True get Muon (momentum, Nesterov, orthogonalized, scaled so that the
    update's RMS does not depend on the matrix's aspect ratio); the others get AdamW."""

    def __init__(self, param_groups, betas=(0.9, 0.95), eps=1e-8, momentum=0.95):
        for group in param_groups:
            group.setdefault("muon", False)
            group.setdefault("weight_decay", 0.0)
            group["base_lr"] = group["lr"]
            if group["muon"] and any(p.dim() != 2 for p in group["params"]):
                raise ValueError("Muon param groups take 2-D weight matrices only")
        super().__init__(param_groups, dict(betas=betas, eps=eps, momentum=momentum))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if wd:
                    p.mul_(1 - lr * wd)  # decoupled weight decay, as in AdamW
                if group["muon"]:
                    self._muon(p, state, lr, group["momentum"])
                else:
                    self._adamw(p, state, lr, group["betas"], group["eps"])

    @staticmethod
    def _muon(p, state, lr, momentum):
        if "momentum" not in state:
            state["momentum"] = torch.zeros_like(p)
        buf = state["momentum"]
        buf.lerp_(p.grad, 1 - momentum)
        g = p.grad.lerp(buf, momentum)  # Nesterov: look one momentum step ahead
        update = orthogonalize(g.float()).to(p.dtype)
        # an orthogonal (m, n) matrix has RMS 1/sqrt(max(m, n)); rescale so that tall and wide
        # matrices move alike (the Muon reference's max(1, m/n)^0.5 factor)
        p.add_(update, alpha=-lr * max(1.0, p.shape[0] / p.shape[1]) ** 0.5)

    @staticmethod
    def _adamw(p, state, lr, betas, eps):
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        b1, b2 = betas
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(p.grad, 1 - b1)
        v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
        m_hat = m / (1 - b1 ** state["step"])
        v_hat = v / (1 - b2 ** state["step"])
        p.addcdiv_(m_hat, v_hat.sqrt().add_(eps), value=-lr)


def make_optimizer(model, lr, weight_decay, muon_lr=None):
    """AdamW (lr) for the embedding, the lm_head and the norms (weight decay on the 2-D ones);
    with muon_lr, Muon for the 2-D weights inside the blocks (no weight decay), else AdamW there too.
    -> an optimizer whose groups each carry `base_lr` for the schedule."""
    hidden, matrices, vectors = [], [], []
    for name, p in model.named_parameters():
        if p.dim() < 2:
            vectors.append(p)
        elif muon_lr and name.startswith("layers."):
            hidden.append(p)
        else:
            matrices.append(p)
    groups = [dict(params=matrices, lr=lr, weight_decay=weight_decay),
              dict(params=vectors, lr=lr, weight_decay=0.0)]
    if hidden:
        groups.append(dict(params=hidden, lr=muon_lr, weight_decay=0.0, muon=True))
    return MuonAdamW(groups)
