"""A small local training loop for the SAE tests (the real trainer is ``workbench.sae.training``).

Adam on random mini-batches, ``sae.loss`` then ``sae.constrain()`` after every step, exactly the contract
the trainer follows; seeded, so a test is deterministic.
"""

from __future__ import annotations

import torch


def fit(sae, X, steps=600, batch_size=256, lr=3e-3, seed=0, step_fn=None):
    """Train ``sae`` on ``X`` in place and return it (in eval mode)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in sae.parameters() if p.requires_grad], lr=lr)
    sae.train()
    for _ in range(steps):
        idx = torch.randint(X.shape[0], (batch_size,), generator=g)
        if step_fn is None:
            x = X[idx]
            codes, x_hat = sae(x)
            loss = sae.loss(x, codes, x_hat)["loss"]
        else:
            loss = step_fn(sae, idx, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sae.constrain()
    return sae.eval()
