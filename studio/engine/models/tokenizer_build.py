"""Build a small CLIP-format BPE tokenizer from text, with no download.

The files are the ones ``transformers.CLIPTokenizer`` reads (``vocab.json``, ``merges.txt``),
so a pipeline folder holding it loads through the same code path as Stable Diffusion.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"

BASIC_WORDS = (
    "a an the of with and on in at by for to from photo portrait picture painting drawing "
    "person man woman boy girl face head hair eyes glasses smile smiling old young happy sad "
    "red orange yellow green blue purple pink brown black white grey gray blonde dark light "
    "background sky city forest sea mountain cat dog house tree flower car night day sunset "
    "round square big small bright soft sharp detailed style art cartoon realistic oil "
    "watercolor sketch lighting studio beautiful ugly blurry low quality high best"
).split()


def bytes_to_unicode() -> dict[int, str]:
    # The reversible byte -> printable character table of GPT-2/CLIP byte-level BPE.
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def build_clip_tokenizer(out_dir: str | Path, corpus: Iterable[str], vocab_size: int = 1000):
    """Train a byte-level BPE on ``corpus`` and save it as a CLIP tokenizer in ``out_dir``.

    Every byte stays encodable (the 256 byte symbols, alone and word-final, are always in
    the vocabulary), so any prompt tokenizes; words of the corpus become single tokens.
    Returns the loaded ``CLIPTokenizer``.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    alphabet = list(bytes_to_unicode().values())
    tok = Tokenizer(models.BPE(unk_token=EOS, end_of_word_suffix="</w>",
                               continuing_subword_prefix=""))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS],
                                  initial_alphabet=alphabet, end_of_word_suffix="</w>",
                                  show_progress=False)
    texts = list(corpus) + [" ".join(BASIC_WORDS)]
    tok.train_from_iterator(texts, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    # Number the symbols as CLIP does: special tokens, the bytes, the word-final bytes (so
    # every byte is encodable alone and at a word's end), then one symbol per merge in merge
    # order. The trainer numbers its word-final symbols in a hash map's order, which also
    # breaks ties between equally frequent merges, so the order of tied merges can differ
    # between builds (huggingface/tokenizers#1794): the merge set stays the same.
    dense = {BOS: 0, EOS: 1}
    for sym in [*alphabet, *(ch + "</w>" for ch in alphabet),
                *("".join(m.split(" ")) for m in merges),
                *sorted(vocab, key=lambda s: vocab[s])]:
        if sym not in dense:
            dense[sym] = len(dense)
    (out / "vocab.json").write_text(json.dumps(dense, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                    encoding="utf-8")
    tokenizer = CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"),
                              model_max_length=77)
    tokenizer.save_pretrained(out)
    return CLIPTokenizer.from_pretrained(out)
