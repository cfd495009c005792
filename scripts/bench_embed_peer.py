#!/usr/bin/env python3
"""sentence-transformers (torch, CPU) on the passages Quarry's embedding bench wrote: the peer a Python
user would run, measured in the same run. Prints the same table as the Rust bench.

    PEER_PYTHON scripts/bench_embed_peer.py PASSAGES.jsonl MODEL_DIR [threads:batch ...]
"""
import json
import os
import resource
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

path, model_dir = sys.argv[1], sys.argv[2]
grid = [tuple(int(x) for x in a.split(":")) for a in sys.argv[3:]] or [(1, 16), (1, 32), (1, 64), (2, 16), (2, 32), (2, 64)]
if len(grid) == 1 or os.environ.get("PEER_CHILD"):
    threads, batch = grid[0]
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = SentenceTransformer(model_dir, device="cpu")
    load = time.perf_counter() - t0
    texts = [json.loads(l) for l in open(path, encoding="utf-8")]
    from tokenizers import Tokenizer
    counter = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    counter.no_truncation()  # the shipped tokenizer.json truncates at 128; the model sees up to 256
    counter.no_padding()
    tokens = sum(min(len(e.ids), 256) for e in counter.encode_batch(texts))
    model.encode(texts[:batch], batch_size=batch)
    t = time.perf_counter()
    model.encode(texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    secs = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| {threads} | {batch} | {len(texts) / secs:.2f} | {tokens / secs:.0f} | {rss:.0f} | {load:.3f} |", flush=True)
else:
    import subprocess
    print("sentence-transformers: same passages")
    print("| threads | batch | passages/s | tokens/s | peak RSS (MiB) | cold load (s) |")
    print("| --- | --- | --- | --- | --- | --- |", flush=True)
    for threads, batch in grid:
        subprocess.run([sys.executable, __file__, path, model_dir, f"{threads}:{batch}"], check=True,
                       env={**os.environ, "PEER_CHILD": "1"})
