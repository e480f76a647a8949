"""The copy probe: teacher-forced metrics on the assistant tokens of val samples, logged at every
evaluation of SFT, the base stage and RL. The later digits of a number can only be copied from the
context, never guessed, so their accuracy says whether the model has learnt to copy (dev/LOG.md)."""

import torch

from nanoparl.common import autocast
from nanoparl.sft_data import collate


def message_runs(mask):
    """Maximal runs of truthy entries of a 0/1 list -> [(start, end), ...]: in a sample's loss mask,
    one run is one assistant message (its closing <|end|> included)."""
    runs, t = [], 0
    while t < len(mask):
        if not mask[t]:
            t += 1
            continue
        start = t
        while t < len(mask) and mask[t]:
            t += 1
        runs.append((start, t))
    return runs


@torch.no_grad()
def evaluate(model, samples, tok, device, batch_size):
    """Teacher-forced metrics on the assistant tokens (mask 1) of val samples -> dict:

    val_loss       mean next-token loss;
    val_exact      share of assistant messages whose argmax prediction is right at every token
                   (a message is a maximal run of mask-1 targets, its closing <|end|> included);
    digit_first    accuracy on the first digit of each number (digits are single tokens);
    digit_later    accuracy on the digits after it, which cannot be guessed from the phrasing:
                   the copy probe (dev/LOG.md's curves show where it jumps);
    exact_awareness, exact_call, exact_reply
                   exact match by part of a message: the <summary>..</plan> prefix, a call list,
                   a plain-text reply (-1 where val has none of that kind).
    """
    model.eval()
    digits = torch.zeros(tok.vocab_size, dtype=torch.bool)
    digits[[tok.hf.token_to_id(str(d)) for d in range(10)]] = True
    plan_end = tok.special["</plan>"]
    loss_sum, n_tok = 0.0, 0
    counts = {k: [0, 0] for k in ("all", "first", "later", "awareness", "call", "reply")}  # [right, total]

    def count(kind, ok):
        counts[kind][0] += ok
        counts[kind][1] += 1

    for i in range(0, len(samples), batch_size):
        idx, targets = collate(samples[i:i + batch_size], tok.end_id)
        idx, targets = idx.to(device), targets.to(device)
        with autocast(device):
            logits = model(idx)
        valid = targets != -1
        loss = torch.nn.functional.cross_entropy(
            logits.float().view(-1, logits.size(-1)), targets.clamp(min=0).view(-1), reduction="none")
        loss_sum += loss.view_as(targets)[valid].sum().item()
        n_tok += valid.sum().item()
        right = ((logits.argmax(-1) == targets) | ~valid).cpu()
        is_digit = digits[targets.clamp(min=0).cpu()] & valid.cpu()
        after_digit = digits[idx.cpu()]  # the input at t is the token before target t
        for ok in right[is_digit & ~after_digit].tolist():
            count("first", ok)
        for ok in right[is_digit & after_digit].tolist():
            count("later", ok)
        for b in range(idx.shape[0]):
            r, tgt = right[b].tolist(), targets[b].tolist()
            for start, t in message_runs(valid[b].tolist()):
                run = range(start, t)
                count("all", all(r[j] for j in run))
                cut = next((j + 1 for j in run if tgt[j] == plan_end), start)
                if cut > start:
                    count("awareness", all(r[j] for j in range(start, cut)))
                if cut < t:  # the action after the awareness: a call list or a reply
                    kind = "call" if tok.id_to_token(tgt[cut]).startswith("[") else "reply"
                    count(kind, all(r[j] for j in range(cut, t)))
    model.train()
    share = {k: (c[0] / c[1] if c[1] else -1.0) for k, c in counts.items()}
    return {"val_loss": loss_sum / max(n_tok, 1), "val_exact": share["all"],
            "digit_first": share["first"], "digit_later": share["later"],
            "exact_awareness": share["awareness"], "exact_call": share["call"], "exact_reply": share["reply"]}


def probe_line(m):
    """The copy probe as one log-line fragment; a share with nothing to count (-1: no awareness
    prefix in plain data, no digit...) prints as "-"."""
    def f(key):
        return "-" if m[key] < 0 else f"{m[key]:.3f}"
    return (f"val loss {m['val_loss']:.4f} | val exact {f('val_exact')} | digits first {f('digit_first')} "
            f"later {f('digit_later')} | exact awareness {f('exact_awareness')} call {f('exact_call')} "
            f"reply {f('exact_reply')}")
