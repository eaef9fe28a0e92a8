"""The device runtime: torch-free inference of artifacts and on-device online learning.

Imports only numpy, onnxruntime (or LiteRT), tokenizers and safetensors.
"""

from edgebert.runtime.engine import Engine
from edgebert.runtime.online import OnlineLearner

__all__ = ["Engine", "OnlineLearner"]
