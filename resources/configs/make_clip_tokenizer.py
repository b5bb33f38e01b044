"""Rebuild ``clip-tokenizer/vocab.json`` and ``merges.txt`` from the CLIP BPE merges file.

Provenance of the bundled tokenizer: ``bpe_simple_vocab_16e6.txt.gz`` ships in the
``open_clip_torch`` wheel on PyPI (and in OpenAI's ``clip`` package). The vocabulary is built
exactly as OpenAI's ``SimpleTokenizer`` builds its encoder, which is also what the Hugging
Face ``openai/clip-vit-large-patch14`` ``vocab.json`` holds:

    the 256 byte symbols, the same with ``</w>``, the first 49152-256-2 merges joined,
    then ``<|startoftext|>`` and ``<|endoftext|>``  (49408 entries).

Usage: ``python make_clip_tokenizer.py path/to/bpe_simple_vocab_16e6.txt.gz``
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from studio.engine.models.tokenizer_build import bytes_to_unicode


def main(bpe_path: str, out_dir: Path) -> None:
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab.extend("".join(m) for m in merges)
    vocab.extend(["<|startoftext|>", "<|endoftext|>"])
    encoder = {v: i for i, v in enumerate(vocab)}
    assert len(encoder) == 49408, len(encoder)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps(encoder, ensure_ascii=False), encoding="utf-8")
    (out_dir / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], Path(__file__).parent / "clip-tokenizer")
