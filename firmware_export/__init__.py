"""Firmware export: an int8 TinyML artifact as a .tflite (LiteRT, TFLite Micro), a TFLM bundle or
standalone C99 with on-device head learning, checked bit for bit against a fixed-point reference
and measured on a Cortex-M4 build under QEMU (``export.export``; ``edgebert export``).

The data flow: ``lower`` (graph form -> integer program) -> ``program`` (its semantics, the
reference) -> ``tflite`` / ``tflm`` / ``c99`` (the formats) -> ``toolchain`` and ``m4`` (builds and
measurements) -> ``budget`` (fits or not) -> ``export`` (checks, firmware.json, the artifact).
Everything reads the artifact's ``graph.safetensors``; nothing is re-derived from ONNX.
"""
