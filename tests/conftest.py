"""Test settings: one torch thread (tiny tensors run faster without threading overhead)."""

import torch

torch.set_num_threads(1)
