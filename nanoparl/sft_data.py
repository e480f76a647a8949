"""SFT data: samples rendered to (ids, loss mask), padded batches, and a length-bucketed data order
that is a pure function of (seed, step). train_sft.py trains on them; train_rl.py and the copy probe
(probe.py) read val samples the same way."""

import json

import numpy as np
import torch

from nanoparl.files import read_text


def load_samples(path, tok, block_size):
    """jsonl of {"messages": [...]} -> list of (ids, mask) numpy arrays; overlong samples dropped."""
    samples, dropped = [], 0
    for lineno, line in enumerate(read_text(path).splitlines(), 1):  # random bytes: an error naming path
        try:
            messages = json.loads(line)["messages"]
            ids, mask = tok.render(messages)
        except (KeyError, TypeError, ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
            raise ValueError(f"{path}:{lineno}: malformed SFT sample ({e})") from None
        if len(ids) > block_size:
            dropped += 1
            continue
        samples.append((np.array(ids, dtype=np.int64), np.array(mask, dtype=np.int64)))
    if not samples:
        raise ValueError(f"{path}: no usable samples ({dropped} longer than block_size {block_size})")
    return samples, dropped


def collate(samples, pad_id, every_token=False):
    """Right-pad to the longest sample. targets[t] = ids[t+1] where mask[t+1] == 1 (every real
    token with every_token=True, the base stage), else -1."""
    T = max(len(ids) for ids, _ in samples) - 1
    idx = torch.full((len(samples), T), pad_id, dtype=torch.long)
    targets = torch.full((len(samples), T), -1, dtype=torch.long)
    for i, (ids, mask) in enumerate(samples):
        n = len(ids) - 1
        idx[i, :n] = torch.from_numpy(ids[:-1])
        targets[i, :n] = torch.from_numpy(ids[1:] if every_token else np.where(mask[1:] == 1, ids[1:], -1))
    return idx, targets


def batch_indices(lengths, batch_size, step, seed, chunk=32):
    """The sample indices of global batch `step`: a pure function of (seed, step) -> exact resume.

    Each epoch is a seeded permutation cut into chunks of `chunk` batches; inside a chunk samples
    are sorted by length and cut into batches, whose order is then shuffled. Batches hold samples
    of similar length (little padding) while the data order stays random.
    """
    n = len(lengths)
    per_epoch = max(1, n // batch_size)
    epoch, k = divmod(step, per_epoch)
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)[:per_epoch * batch_size]
    batches = []
    for c in range(0, len(perm), chunk * batch_size):
        part = perm[c:c + chunk * batch_size]
        part = part[np.argsort(lengths[part], kind="stable")]
        group = [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
        batches += [group[j] for j in rng.permutation(len(group))]
    return batches[k]
