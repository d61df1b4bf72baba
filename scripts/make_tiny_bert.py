"""Generate the tiny random BERT that the tests use instead of a pretrained model.

It is a real `BertModel` (4 layers, hidden size 32, 2 attention heads) with random weights and a
small uncased WordPiece vocabulary (common English words plus single characters and `##` pieces, so
every input tokenizes without `[UNK]`). Nothing is downloaded.

Usage: python scripts/make_tiny_bert.py test_fixtures/tiny_bert
"""

import string
import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

WORDS = """
the a an and or but not no is are was were be been it this that these those there here of to in
on at by for with from as into than then so very too good bad great terrible awful wonderful best
worst love hate like film movie story plot actor actors acting fun funny boring dull brilliant
beautiful ugly nice poor fine excellent mediocre masterpiece mess waste time money i you he she we
they me him her us them my your his its our their what who why how when where all some any many
much more most less few one two three man woman men women people child children dog cat boy girl
person street outside inside sitting standing running walking playing sleeping eating water ball
game team won lost win lose match season player players market stocks shares company profit oil
prices bank economy government president election minister war peace country world news says said
new old big small first last year years day week today yesterday computer software internet phone
science space research study technology microsoft google apple
""".split()


def build_vocab():
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces = ["##" + c for c in string.ascii_lowercase + string.digits]
    vocab = specials + chars + pieces
    vocab += [w for w in dict.fromkeys(WORDS) if w not in vocab]
    return vocab


def main(output_dir: str) -> None:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = build_vocab()
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(str(out))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
        type_vocab_size=2,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    torch.manual_seed(0)
    model = BertModel(config)
    model.save_pretrained(str(out), safe_serialization=True)
    print(f"wrote a {config.num_hidden_layers}-layer BERT with {len(vocab)} wordpieces to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "test_fixtures/tiny_bert")
