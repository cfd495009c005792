#!/usr/bin/env python3
"""Builds model.onnx for all-MiniLM-L6-v2 from the wheel's model.safetensors, without torch.

The graph is what ONNX Runtime's own BERT optimizer would produce from a torch export, written out
directly with ORT's fused CPU operators (com.microsoft EmbedLayerNormalization, Attention,
SkipLayerNormalization, BiasGelu), followed by sentence-transformers' mean pooling over the attention
mask and L2 normalisation. Inputs: input_ids and attention_mask, int32 [batch, seq], right-padded.
Output: embedding, float32 [batch, 384], unit length.

Usage: python build_onnx.py MODEL_DIR   (writes MODEL_DIR/model.onnx; needs numpy and onnx)
"""
import json
import os
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

model_dir = sys.argv[1]
cfg = json.load(open(os.path.join(model_dir, "config.json")))
H, HEADS, LAYERS, EPS = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"], cfg["layer_norm_eps"]
assert cfg["hidden_act"] == "gelu" and cfg["position_embedding_type"] == "absolute"

with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(n))
    data = f.read()


def t(name):
    meta = header[name]
    assert meta["dtype"] == "F32", name
    start, end = meta["data_offsets"]
    return np.frombuffer(data[start:end], dtype="<f4").reshape(meta["shape"])


inits, nodes = [], []


def init(name, arr):
    inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
    return name


def node(op, inputs, outputs, domain="", **attrs):
    nodes.append(helper.make_node(op, inputs, outputs, domain=domain, name=outputs[0] + "_" + op, **attrs))
    return outputs[0]


e = "embeddings."
# token_type_ids are all zero for single sentences: fold segment 0's embedding into the positions.
positions = t(e + "position_embeddings.weight") + t(e + "token_type_embeddings.weight")[0]
nodes.append(helper.make_node(
    "EmbedLayerNormalization",
    ["input_ids", "", init("word_emb", t(e + "word_embeddings.weight")), init("pos_emb", positions),
     "", init("emb_ln_g", t(e + "LayerNorm.weight")), init("emb_ln_b", t(e + "LayerNorm.bias")), "attention_mask"],
    ["x0", "mask_index"], domain="com.microsoft", epsilon=EPS, name="embed"))

x = "x0"
for i in range(LAYERS):
    p = f"encoder.layer.{i}."
    a = p + "attention."
    wqkv = np.concatenate([t(a + "self.query.weight").T, t(a + "self.key.weight").T, t(a + "self.value.weight").T], axis=1)
    bqkv = np.concatenate([t(a + "self.query.bias"), t(a + "self.key.bias"), t(a + "self.value.bias")])
    att = node("Attention", [x, init(f"l{i}_wqkv", wqkv), init(f"l{i}_bqkv", bqkv), "mask_index"], [f"l{i}_att"],
               domain="com.microsoft", num_heads=HEADS)
    proj = node("MatMul", [att, init(f"l{i}_wo", t(a + "output.dense.weight").T)], [f"l{i}_proj"])
    x1 = node("SkipLayerNormalization",
              [proj, x, init(f"l{i}_ln1_g", t(a + "output.LayerNorm.weight")), init(f"l{i}_ln1_b", t(a + "output.LayerNorm.bias")),
               init(f"l{i}_bo", t(a + "output.dense.bias"))], [f"l{i}_x1"], domain="com.microsoft", epsilon=EPS)
    h = node("MatMul", [x1, init(f"l{i}_w1", t(p + "intermediate.dense.weight").T)], [f"l{i}_h"])
    g = node("BiasGelu", [h, init(f"l{i}_b1", t(p + "intermediate.dense.bias"))], [f"l{i}_g"], domain="com.microsoft")
    h2 = node("MatMul", [g, init(f"l{i}_w2", t(p + "output.dense.weight").T)], [f"l{i}_h2"])
    x = node("SkipLayerNormalization",
             [h2, x1, init(f"l{i}_ln2_g", t(p + "output.LayerNorm.weight")), init(f"l{i}_ln2_b", t(p + "output.LayerNorm.bias")),
              init(f"l{i}_b2", t(p + "output.dense.bias"))], [f"l{i}_x2"], domain="com.microsoft", epsilon=EPS)

# Mean pooling over real tokens, then L2 normalisation (sentence-transformers' Pooling + Normalize).
inits.append(numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"))
inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"))
inits.append(numpy_helper.from_array(np.array(1e-9, dtype=np.float32), "tiny"))
m = node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT)
m3 = node("Unsqueeze", [m, "axis2"], ["mask3"])
masked = node("Mul", [x, m3], ["masked"])
summed = node("ReduceSum", [masked, "axis1"], ["summed"], keepdims=0)
count = node("ReduceSum", [m3, "axis1"], ["count"], keepdims=0)
count = node("Max", [count, "tiny"], ["count_safe"])
mean = node("Div", [summed, count], ["mean"])
node("LpNormalization", [mean], ["embedding"], axis=1, p=2)

graph = helper.make_graph(
    nodes, "all-MiniLM-L6-v2",
    [helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["batch", "seq"]),
     helper.make_tensor_value_info("attention_mask", TensorProto.INT32, ["batch", "seq"])],
    [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", H])],
    initializer=inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                          producer_name="quarry scripts/build_onnx.py")
model.ir_version = 8
onnx.checker.check_model(model)
out = os.path.join(model_dir, "model.onnx")
onnx.save(model, out + ".tmp")
os.replace(out + ".tmp", out)
print(f"model: wrote {out} ({os.path.getsize(out) / 1e6:.1f} MB)")
