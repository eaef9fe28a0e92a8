from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgebert.model.zoo import corpus_path, make_random_bert


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight BERT-Tiny (L2/H128) sentence-transformers checkpoint directory."""
    return make_random_bert(tmp_path_factory.mktemp("ckpt") / "bert-tiny", "bert-tiny", seed=1)


@pytest.fixture(scope="session")
def tiny_graph(tiny_ckpt: Path):
    """(checkpoint, fp32 graph form, calibration statistics on 24 corpus lines) of the tiny BERT."""
    from edgebert.compress.calibrate import calibrate
    from edgebert.compress.lower import lower_bert
    from edgebert.model.checkpoint import load_checkpoint
    from edgebert.model.encoder import BertEncoder
    from edgebert.model.tokenizer import encode_batch

    ckpt = load_checkpoint(tiny_ckpt)
    g = lower_bert(BertEncoder.from_checkpoint(ckpt))
    ids, mask = encode_batch(ckpt.tokenizer, corpus_path().read_text().splitlines()[:24])
    return ckpt, g, calibrate(g, [{"input_ids": ids, "attention_mask": mask}])


@pytest.fixture(scope="session")
def calibration_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = corpus_path().read_text(encoding="utf-8").splitlines()[:60]
    path = tmp_path_factory.mktemp("cal") / "calibration.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_artifact(tiny_ckpt: Path, calibration_file: Path, tmp_path_factory: pytest.TempPathFactory):
    import edgebert

    return edgebert.convert(tiny_ckpt, tmp_path_factory.mktemp("art") / "tiny-int8", "int8", calibration_file)


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgebert.model.tinyml import train

    return train("digits", tmp_path_factory.mktemp("tinyml") / "digits", steps=300)[0]


@pytest.fixture(scope="session")
def digits_artifact(digits_model: Path, tmp_path_factory: pytest.TempPathFactory):
    import edgebert

    return edgebert.convert(digits_model, tmp_path_factory.mktemp("art") / "digits-int8", "int8",
                            digits_model / "calibration.npy")


@pytest.fixture()
def fleet(tmp_path: Path, tiny_artifact, digits_artifact) -> Iterator:  # noqa: ANN001
    """Signed-artifact copies, a fleet key and device agents on a broker (tests/fleetkit.py)."""
    from .fleetkit import Fleet

    f = Fleet(tmp_path, tiny_artifact, digits_artifact)
    yield f
    f.close()
