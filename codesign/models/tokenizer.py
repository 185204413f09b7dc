"""A byte-level tokenizer built in code, for tiny random-weight models (no download, no files).

Every UTF-8 byte is a token (256 ids) plus a few special tokens, and a ChatML-style chat
template, so tiny models go through exactly the same prompt/generation path as real ones.
"""

from __future__ import annotations

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]


def byte_tokenizer():
    """A ``PreTrainedTokenizerFast`` over raw bytes: vocab 256 + 4 specials (ids 256..259)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<pad>",
        unk_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


VOCAB_SIZE = 256 + len(SPECIALS)
