"""Byte-level BPE tokenizer (trained with Hugging Face `tokenizers`) and the chat format.

A conversation is a list of messages, each a dict {"role": ..., "content": ...} with role one of
system, user, assistant, tool. render() turns it into token ids and a loss mask:

    <|bos|> <|system|> ...functions... <|end|> <|user|> ... <|end|>
    <|assistant|> <summary>...</summary><plan>...</plan>[f(a=1)] <|end|> <|tool|> ... <|end|> ...

mask is 1 exactly on the tokens the assistant wrote, i.e. the content of assistant messages and
their closing <|end|>; the <|assistant|> role token is 0 (the agent loop forces it, the model never
chooses it). An assistant message with "train": False (the previous turn's awareness, shown as
context in the awareness policy) is rendered the same way but masked 0.

Digits are split into single tokens before BPE, so that a 4-digit ID is 4 tokens the model can copy
one at a time (dev/LOG.md, "Teaching a tiny model to copy").

Special tokens are recognised only in assistant content (the awareness tags): in system, user and
tool text they are encoded as plain bytes, so a tool result that echoes "<|end|>" cannot end a turn.
"""

import os

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from nanoparl.files import write_file

SPECIAL_TOKENS = [
    "<|bos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", "<|end|>",
    "<summary>", "</summary>", "<plan>", "</plan>",
]
ROLES = ("system", "user", "assistant", "tool")


class Tokenizer:
    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer
        self.special = {}
        for tok in SPECIAL_TOKENS:
            i = hf_tokenizer.token_to_id(tok)
            if i is None:
                raise ValueError(f"tokenizer lacks special token {tok}")
            self.special[tok] = i
        self.bos_id = self.special["<|bos|>"]
        self.end_id = self.special["<|end|>"]
        self.role_ids = {r: self.special[f"<|{r}|>"] for r in ROLES}

    # ---- training, saving, loading

    @classmethod
    def train(cls, texts, vocab_size):
        """Train a byte-level BPE of vocab_size tokens (special tokens included) on an iterable of str."""
        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    def save(self, path):
        write_file(path, self.hf.to_str(pretty=True))  # atomically: what HFTokenizer.save writes

    @classmethod
    def load(cls, path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"no tokenizer at {path} (run data_gen.py first)")
        try:
            return cls(HFTokenizer.from_file(path))
        except Exception as e:  # tokenizers raises a bare Exception on bad JSON
            raise ValueError(f"cannot read tokenizer {path}: {e}") from e

    # ---- encoding

    @property
    def vocab_size(self):
        return self.hf.get_vocab_size()

    def encode(self, text, allow_special=False):
        """text -> ids. With allow_special=False, '<|end|>' etc. in text are encoded as bytes."""
        self.hf.encode_special_tokens = not allow_special
        return self.hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids, skip_special=False):
        return self.hf.decode(list(ids), skip_special_tokens=skip_special)

    def id_to_token(self, i):
        return self.hf.id_to_token(i)

    # ---- the chat format

    def render_message(self, message):
        """One message -> (ids, mask): role token, content, <|end|>."""
        role = message["role"]
        if role not in self.role_ids:
            raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
        is_assistant = role == "assistant"
        content = self.encode(message["content"], allow_special=is_assistant)
        ids = [self.role_ids[role]] + content + [self.end_id]
        trained = 1 if is_assistant and message.get("train", True) else 0
        mask = [0] + [trained] * (len(content) + 1)
        return ids, mask

    def render(self, messages, add_generation_prompt=False):
        """messages -> (ids, mask), two lists of equal length; see the module docstring."""
        ids, mask = [self.bos_id], [0]
        for m in messages:
            i, k = self.render_message(m)
            ids += i
            mask += k
        if add_generation_prompt:  # the prompt the agent loop forces before the model speaks
            ids.append(self.role_ids["assistant"])
            mask.append(0)
        return ids, mask

