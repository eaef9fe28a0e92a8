"""The graph form: the project's model format (``form``), the meaning of each op (``reference``,
the numpy interpreter every emitter and the device agree with), the quantization formulas
(``quantize``) and what x86 int8 kernels compute (``avx2``). Torch-free; read by the converter's
passes, the emitters (ONNX now; .tflite and C next), the runtime and ``firmware_export``."""
