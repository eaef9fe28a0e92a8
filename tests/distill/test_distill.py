"""Pre-trained distillation on a tiny random teacher: the checkpoint it writes, determinism, resume
after kill -9, vocabulary pruning, and one-line refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgebert.cli import main
from edgebert.distill import distill
from edgebert.distill.engine import batch_indices
from edgebert.distill.student import layer_map, student_config
from edgebert.distill.vocab import coverage, prune, required_tokens, vocab_of
from edgebert.errors import InputError
from edgebert.model.zoo import corpus_path


def _weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path / "model.safetensors"))


def test_the_student_is_a_checkpoint_convert_takes_with_the_teachers_width(tiny_ckpt: Path, tmp_path: Path) -> None:
    import edgebert
    from edgebert.model.checkpoint import load_checkpoint

    report = distill(tiny_ckpt, corpus_path(), tmp_path / "s", "L1H64", steps=30, save_every=10, vocab_size=600)
    ckpt = load_checkpoint(tmp_path / "s")
    assert ckpt.config.num_hidden_layers == 1 and ckpt.config.hidden_size == 64 and ckpt.config.vocab_size == 600
    # pooled CLS and mean (2 x 64), projected to the teacher's width
    assert ckpt.pooling is not None and ckpt.pooling.mode == "cls+mean" and ckpt.pooling.normalize
    assert ckpt.projection is not None and ckpt.projection[0].shape == (128, 128)
    curve = report["training"]["curve"]
    assert curve[0]["step"] == 0 and curve[-1]["step"] == 30 and curve[-1]["held_out_cosine"] > curve[0]["held_out_cosine"]
    art = edgebert.convert(tmp_path / "s", tmp_path / "a", "int8", corpus_path())
    from edgebert.runtime.engine import Engine

    emb = Engine.load(art.path).embed(["a sentence for the student"])
    assert emb.shape == (1, 128) and abs(float(np.linalg.norm(emb)) - 1.0) < 1e-3  # projected, then normalized


def test_same_seed_same_student_and_batches_depend_on_seed_and_step_only(tiny_ckpt: Path, tmp_path: Path) -> None:
    a = distill(tiny_ckpt, corpus_path(), tmp_path / "a", "L1H64", steps=12, save_every=4)
    distill(tiny_ckpt, corpus_path(), tmp_path / "b", "L1H64", steps=12, save_every=4)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa) and a["resumed_from_step"] is None
    assert np.array_equal(batch_indices(7, 100, 32, 0), batch_indices(7, 100, 32, 0))
    assert not np.array_equal(batch_indices(7, 100, 32, 0), batch_indices(7, 100, 32, 1))
    seen = np.concatenate([batch_indices(s, 100, 10, 0) for s in range(10)])
    assert sorted(seen) == list(range(100))  # one epoch: every line once


def _cli(teacher: Path, out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "edgebert", "distill", str(teacher), "--student", "L1H64", "--data",
            str(corpus_path()), "--out", str(out), "--steps", str(steps), "--save-every", "10", "--quiet"]


def test_a_run_killed_with_sigkill_resumes_to_the_same_weights(tiny_ckpt: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cli(tiny_ckpt, tmp_path / "straight", 120), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(_cli(tiny_ckpt, tmp_path / "killed", 120), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / ".distill" / "state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(state.read_text())["step"] >= 40:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert 40 <= killed_at < 120
    done = subprocess.run(_cli(tiny_ckpt, tmp_path / "killed", 120), check=True, env=env, capture_output=True, text=True)
    assert f"resumed at step {killed_at}" in done.stdout
    ws, wk = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert all(np.array_equal(ws[k], wk[k]) for k in ws)


def test_vocabulary_pruning_keeps_every_input_spellable_and_remaps_the_tokenizer(tiny_ckpt: Path) -> None:
    from tokenizers import Tokenizer

    from edgebert.model.checkpoint import load_checkpoint

    tok = load_checkpoint(tiny_ckpt).tokenizer
    original = tok.to_str()
    vocab = vocab_of(original)
    lines = corpus_path().read_text().splitlines()
    counts = Counter(i for e in tok.encode_batch(lines[:200]) for i in e.ids)
    required = required_tokens(vocab)
    pruned = prune(original, counts, len(required) + 50)
    assert len(pruned.old_ids) == len(required) + 50 and pruned.required == len(required)
    new = Tokenizer.from_str(pruned.tokenizer_json)
    old_vocab, new_vocab = vocab, vocab_of(pruned.tokenizer_json)
    assert sorted(new_vocab.values()) == list(range(len(new_vocab)))
    for line in lines[200:260]:
        enc = new.encode(line)
        assert enc.tokens[0] == "[CLS]" and enc.ids[0] == new_vocab["[CLS]"] and enc.tokens[-1] == "[SEP]"
        assert "[UNK]" not in enc.tokens or "[UNK]" in tok.encode(line).tokens  # characters spell what pieces cannot
        assert all(pruned.old_ids[i] == old_vocab[t] for i, t in zip(enc.ids, enc.tokens, strict=True))
    held = [e.ids for e in tok.encode_batch(lines[200:])]
    specials = {old_vocab["[CLS]"], old_vocab["[SEP]"]}
    assert coverage(held, set(pruned.old_ids), specials) < coverage(held, set(vocab.values()), specials) == 1.0
    with pytest.raises(InputError, match="at least"):
        prune(original, counts, 10)


def test_students_take_teacher_layers_evenly_from_the_top() -> None:
    assert layer_map(2, 6) == [2, 5] and layer_map(1, 2) == [1] and layer_map(4, 4) == [0, 1, 2, 3]
    from edgebert.model.config import BertConfig

    teacher = BertConfig(30522, 384, 6, 12, 1536)
    cfg = student_config("bert-tiny", teacher, 8000, "teacher", 512)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (2, 128, 4, 512)
    with pytest.raises(InputError, match="no wider or deeper"):
        student_config("L8H128", teacher, 8000, "teacher", 512)
    with pytest.raises(InputError, match="L<layers>H<hidden>"):
        student_config("huge", teacher, 8000, "teacher", 512)


@pytest.mark.parametrize("args, match", [
    (["--student", "L1H65"], "divisible by the teacher's head width"),
    (["--vocab-size", "5"], "--vocab-size: expected at least"),
    (["--data", "/nonexistent.txt"], "expected a UTF-8 text file"),
    (["--steps", "0"], "positive --steps"),
])
def test_bad_requests_are_one_line(tiny_ckpt: Path, tmp_path: Path, capsys, args: list[str], match: str) -> None:
    base = {"--student": "L1H64", "--data": str(corpus_path()), "--steps": "3"}
    flags = dict(zip(args[::2], args[1::2], strict=True))
    argv = ["distill", str(tiny_ckpt), "--out", str(tmp_path / "o"), "--quiet"]
    for k, v in {**base, **flags}.items():
        argv += [k, v]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_another_runs_state_is_not_resumed(tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    distill(tiny_ckpt, corpus_path(), tmp_path / "s", "L1H64", steps=3, save_every=1)
    with pytest.raises(InputError, match="another run's"):
        distill(tiny_ckpt, corpus_path(), tmp_path / "s", "L1H64", steps=3, seed=1)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="expected a new output directory"):
        distill(tiny_ckpt, corpus_path(), tmp_path / "other", "L1H64", steps=3)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_a_giant_line_is_cut_to_what_the_tokenizer_can_use(tmp_path: Path) -> None:
    from edgebert.distill.corpus import MAX_LINE_CHARS, read_lines, split

    text = tmp_path / "t.txt"
    text.write_text("\n".join(["x" * (3 * MAX_LINE_CHARS)] + [f"sentence number {i}" for i in range(30)]) + "\n")
    lines = read_lines(text)
    assert len(lines) == 31 and len(lines[0]) == MAX_LINE_CHARS
    train, held = split(lines, 0, 500)
    assert len(held) == 6 and not set(train) & set(held)  # at most 20% held out, disjoint
    text.write_text("only\ntwo\n")
    with pytest.raises(InputError, match="at least 20 distinct"):
        read_lines(text)


def test_a_binarization_aware_student_exports_what_it_trained_and_resumes_exactly(tiny_ckpt: Path, tmp_path: Path) -> None:
    import torch

    from edgebert.graph.binarize import binarize, dequantize
    from edgebert.model.checkpoint import load_checkpoint
    from edgebert.model.encoder import BertEncoder
    from edgebert.model.tokenizer import encode_batch

    report = distill(tiny_ckpt, corpus_path(), tmp_path / "b", "L2H128", steps=12, save_every=6, binarize="w1a8",
                     pooling="mean")
    assert report["binarize"] == "w1a8"
    curve = report["training"]["curve"]
    assert curve[-1]["held_out_cosine"] > curve[0]["held_out_cosine"]
    ckpt = load_checkpoint(tmp_path / "b")
    weights = _weights(tmp_path / "b")
    linears = [k for k in weights if k.startswith("encoder.") and k.endswith(".weight") and weights[k].ndim == 2]
    assert len(linears) == 12 and not any("parametrizations" in k for k in weights)  # latent weights, plain names
    # the latent weights, binarized the way the export binarizes them, give the trained model's embedding
    model = BertEncoder.from_checkpoint(ckpt)
    with torch.no_grad():
        for k in linears:
            module = model.get_submodule(k.removesuffix(".weight"))
            module.weight.copy_(torch.from_numpy(dequantize(binarize(weights[k]))))
    from edgebert.distill.student import binarize_student

    trained = binarize_student(BertEncoder.from_checkpoint(ckpt), "w1a8")
    ids, mask = map(torch.from_numpy, encode_batch(ckpt.tokenizer, ["one sentence", "and another one here"]))
    with torch.no_grad():
        assert torch.allclose(model.sentence_embedding(ids, mask), trained.sentence_embedding(ids, mask), atol=1e-5)
    # interrupted after its step-6 save, then run again: the weights of twelve straight steps (the
    # parametrized state is saved and loaded)

    def interrupt(step: str, done: int, total: int) -> None:
        if step.startswith("distill") and done == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(tiny_ckpt, corpus_path(), tmp_path / "r", "L2H128", steps=12, save_every=6, binarize="w1a8",
                pooling="mean", progress=interrupt)
    resumed = distill(tiny_ckpt, corpus_path(), tmp_path / "r", "L2H128", steps=12, save_every=6, binarize="w1a8",
                      pooling="mean")
    assert resumed["resumed_from_step"] == 6
    again = _weights(tmp_path / "r")
    assert all(np.array_equal(weights[k], again[k]) for k in weights)
