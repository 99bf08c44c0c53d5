"""Fidelity diagnostics: where integer training and evaluation depart from float32, measured on
the same weights. Self-contained (numpy, torch, intedge), importable by the tests and by the
study (tools/fidelity/study.py).

- eval_agreement: intedge's evaluation against the float evaluation of the very same weights.
"""
import numpy as np
import torch


def load_into(net, state):
    """Copies intedge's parameters and running statistics (a Trainer.state_dict()) into a torch
    net with the same parameter names. Returns net."""
    cur = net.state_dict()
    for k, v in state.items():
        cur[k] = torch.tensor(v).reshape(cur[k].shape)
    net.load_state_dict(cur)
    return net


def eval_agreement(trainer, net, x, y):
    """intedge's eval-mode predictions against the float32 eval-mode predictions of the same
    weights and running statistics: {'acc_gap': intedge acc - float acc, 'agreement': share of
    samples whose argmax agrees}."""
    load_into(net, trainer.state_dict())
    was_training = net.training
    net.eval()
    with torch.no_grad():
        ref = net(torch.as_tensor(x)).argmax(1).numpy()
    net.train(was_training)
    ours = trainer.predict(x).argmax(1)
    return {"acc_gap": float((ours == y).mean() - (ref == y).mean()), "agreement": float((ours == ref).mean())}
