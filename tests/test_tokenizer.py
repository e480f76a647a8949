"""Tokenizer: round trip, special tokens are single ids, render() masks exactly the assistant's tokens."""

import pytest

from nanoparl.tokenizer import SPECIAL_TOKENS, Tokenizer

TEXTS = [
    "Book me a flight from Boston to Paris on 2025-03-04 in economy.",
    "[book_flight(access_token='1234', travel_from='BOS', travel_to='CDG')]",
    '{"booking_id": "4821", "status": "confirmed"}',
    "<summary>booking 4821 made</summary><plan>1. purchase_insurance</plan>",
    "Les élèves ont réservé un vol 🚀 pour Zürich.",
] * 20


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(TEXTS, vocab_size=400)


def test_round_trip(tok):
    for text in TEXTS[:5] + ["unseen words: quixotic zephyr 0123456789 ñ 漢字", "  spaces\n\ttabs  "]:
        assert tok.decode(tok.encode(text)) == text


def test_special_tokens_are_single_ids(tok):
    ids = {tok.encode(s, allow_special=True)[0] for s in SPECIAL_TOKENS}
    assert len(ids) == len(SPECIAL_TOKENS)
    for s in SPECIAL_TOKENS:
        assert tok.encode(s, allow_special=True) == [tok.special[s]]
        # outside assistant text they are plain bytes: a tool cannot inject <|end|>
        assert len(tok.encode(s)) > 1


def test_digits_are_single_tokens(tok):
    ids = tok.encode("4821")
    assert [tok.decode([i]) for i in ids] == ["4", "8", "2", "1"]


def test_render_masks_exactly_the_assistant_tokens(tok):
    messages = [
        {"role": "system", "content": "cd(folder: str)"},
        {"role": "user", "content": "go to docs"},
        {"role": "assistant", "content": "<summary>x</summary>[cd(folder='docs')]"},
        {"role": "tool", "content": '{"current_working_directory": "docs"}'},
        {"role": "assistant", "content": "Done.", "train": False},
        {"role": "assistant", "content": "Done."},
    ]
    ids, mask = tok.render(messages)
    assert len(ids) == len(mask) and ids[0] == tok.bos_id and mask[0] == 0
    pos = 1
    for m in messages:
        content = tok.encode(m["content"], allow_special=m["role"] == "assistant")
        n = len(content) + 2
        assert ids[pos:pos + n] == [tok.role_ids[m["role"]]] + content + [tok.end_id]
        want = 1 if m["role"] == "assistant" and m.get("train", True) else 0
        assert mask[pos] == 0  # role token never trained
        assert mask[pos + 1:pos + n] == [want] * (n - 1)  # content and closing <|end|>
        pos += n
    assert pos == len(ids)
    ids2, mask2 = tok.render(messages, add_generation_prompt=True)
    assert ids2[:-1] == ids and ids2[-1] == tok.role_ids["assistant"] and mask2[-1] == 0
    with pytest.raises(ValueError, match="unknown role"):
        tok.render([{"role": "robot", "content": "x"}])


def test_save_load(tok, tmp_path):
    path = str(tmp_path / "tokenizer.json")
    tok.save(path)
    tok2 = Tokenizer.load(path)
    assert tok2.encode(TEXTS[1]) == tok.encode(TEXTS[1]) and tok2.special == tok.special
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        Tokenizer.load(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        Tokenizer.load(str(tmp_path / "bad.json"))
