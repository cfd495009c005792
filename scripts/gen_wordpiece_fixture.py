#!/usr/bin/env python3
"""Writes shared/tokenizer/tests/fixtures/wordpiece_reference.json: token ids that Hugging Face `tokenizers`
gives for a set of texts with all-MiniLM-L6-v2's tokenizer.json. Quarry's own WordPiece must agree.

    pip install --target /tmp/pytok tokenizers
    PYTHONPATH=/tmp/pytok python3 scripts/gen_wordpiece_fixture.py "$QUARRY_MODEL_DIR/tokenizer.json"
"""
import json
import random
import sys

from tokenizers import Tokenizer

tok = Tokenizer.from_file(sys.argv[1])
tok.no_truncation()
tok.no_padding()

texts = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Café au lait, naïve résumé, coöperate, Ångström, Øresund, Straße, ŁÓDŹ",
    "東京は日本の首都です。北京是中国的首都！",
    "Emoji 😀🎉 and symbols ©®™ ±×÷ ∑∫√ € £ ¥ $100.00",
    "Soft\u00adhyphen, zero\u200bwidth, joiner\u200dhere, bidi \u202emark\u202c",
    "tabs\tand\nnewlines\r\nand   spaces",
    "URL https://example.com/path?q=1&r=two#frag and email someone@example.org",
    "snake_case camelCase kebab-case SCREAMING_CASE 3.14159 1,000,000 2024-01-15T10:00:00Z",
    "a" * 99,
    "b" * 100,
    "c" * 101,
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "Ελληνικά κείμενα με τόνους, Русский текст с ударе́нием, עברית, العربية, हिन्दी, ไทย, 한국어",
    "İstanbul ıi ǅemal ﬁ ﬂ ß ẞ Ⅻ ① ²³",
    "[CLS] [SEP] [UNK] [PAD] [MASK] are special only when added",
    "\"Quoted\" 'single' «guillemets» „German“ —dash– …ellipsis",
    "control\x01chars\x7fhere",
    "",
    "   ",
    "x",
    "Mixed123Numbers456and789Letters",
    "C++ & C# vs. F#; Rust's `impl<T>` {braces} [brackets] (parens) <angles> ~tilde^caret|pipe\\backslash",
]
rng = random.Random(20261125)
pools = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    " \t\n.,;:!?'\"()[]{}-_/\\@#$%^&*+=<>|~`",
    "éèêëàâäîïôöùûüçñÉÈÀÇÑ",
    "日本語中文汉字한국어ひらがなカタカナ",
    "αβγδεζηθλμπσφψωАБВГДЕЖЗИЙабвгдежзий",
    "\u0301\u0308\u0327\u00ad\u200b\u200d\ufeff\u2028\u00a0\u3000",
    "😀🎉👍🏽🇫🇷∑∫√€£¥©®™",
]
words = ("protein vitamin cancer risk diet study patients acid intake cholesterol breast "
         "cardiovascular mortality association supplementation randomized trial").split()
for i in range(300):
    n = rng.randint(1, 200)
    if i % 3 == 0:
        t = " ".join(rng.choice(words).capitalize() if rng.random() < 0.1 else rng.choice(words) for _ in range(n // 4 + 1))
    else:
        t = "".join(rng.choice(rng.choice(pools)) for _ in range(n))
    texts.append(t)

out = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in texts]
path = "shared/tokenizer/tests/fixtures/wordpiece_reference.json"
with open(path, "w", encoding="utf-8") as f:
    json.dump({"generator": "huggingface tokenizers " + __import__("tokenizers").__version__, "cases": out}, f, ensure_ascii=False, indent=0)
print(f"wrote {len(out)} cases to {path}")
