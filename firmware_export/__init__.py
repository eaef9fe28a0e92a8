"""Firmware export (.tflite flatbuffers, C arrays for TFLite Micro, C99 kernels).

Not implemented yet: it will read an artifact's ``graph.safetensors`` (the quantized graph form
of ``edgebert.graph.form``), never re-derive quantization from ONNX.
"""
