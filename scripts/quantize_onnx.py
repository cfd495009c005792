#!/usr/bin/env python3
"""Writes model-int8.onnx beside model.onnx: the same graph with every MatMul's weights in int8.

ONNX Runtime's own dynamic quantisation (onnxruntime.quantization.quantize_dynamic): weights int8,
symmetric, one scale per output channel; activations quantised at run time; only MatMul nodes (the
feed-forward and projection weights, most of the model's multiplies), so the fused Attention and
layer-norm operators stay f32. Deterministic: the same model.onnx gives the same bytes, which the
setup script checks against a pinned hash. Retrieval quality is what judges it (docs/RELEVANCE.md).

Usage: python quantize_onnx.py MODEL_DIR   (needs numpy, onnx, onnxruntime, packaging)
"""
import os
import sys

from onnx import TensorProto
from onnxruntime.quantization import QuantType, quantize_dynamic

model_dir = sys.argv[1]
quantize_dynamic(
    os.path.join(model_dir, "model.onnx"),
    os.path.join(model_dir, "model-int8.onnx"),
    per_channel=True,
    reduce_range=False,
    weight_type=QuantType.QInt8,
    op_types_to_quantize=["MatMul"],
    # The graph's com.microsoft operators hide their outputs' types from ONNX's shape inference:
    # everything they produce is f32.
    extra_options={"DefaultTensorType": TensorProto.FLOAT},
)
