"""Firmware export (.tflite flatbuffers, C arrays for TFLite Micro, C99 kernels).

In progress (issue 13): ``fixedpoint`` holds TFLite Micro's integer requantization in numpy, the
reference the exporters will be checked against. The exporters will read an artifact's
``graph.safetensors`` (the quantized graph form of ``edgebert.graph.form``), never re-derive
quantization from ONNX.
"""
