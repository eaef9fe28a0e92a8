"""``edgebert distill``: a compact student of a sentence-embedding teacher, as a normal checkpoint.

teacher checkpoint + unlabeled text -> (vocabulary pruning, ``vocab.py``) -> student shape and
initial weights (``student.py``) -> distillation (``engine.py``, resumable) -> a Hugging Face style
checkpoint directory (``write.py``) that ``edgebert convert`` takes as is.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgebert.errors import InputError
from edgebert.progress import Progress, silent

HELD_OUT = 500


def _fingerprint(**parts: Any) -> str:  # noqa: ANN401
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def distill(teacher_dir: str | Path, data: str | Path, out_dir: str | Path, student: str = "bert-tiny", *,
            steps: int | None = None, minutes: float | None = None, vocab_size: int | None = None,
            init: str = "teacher", seed: int = 0, batch_size: int = 32, max_length: int = 32, lr: float = 2e-3,
            save_every: int = 100, pooling: str | None = None, binarize: str | None = None,
            force: bool = False, progress: Progress = silent) -> dict[str, Any]:
    """Distil ``teacher_dir`` into a ``student`` on the lines of ``data``; write a checkpoint to
    ``out_dir``. An earlier run's state in ``out_dir`` with the same settings is resumed. ``pooling``:
    the student's pooling modes (default ``cls+mean``, ``student.DEFAULT_POOLING``). ``binarize``
    ("w1a8" or "w1a1"): the student's encoder linears train through 1-bit weights (and inputs)
    (``student.binarize_student``), for ``edgebert convert --precision binary``."""
    import torch
    from tokenizers import Tokenizer

    from edgebert.distill.corpus import read_lines, split
    from edgebert.distill.engine import STATE_DIR, Distiller, Trainable, TrainConfig
    from edgebert.distill.student import DEFAULT_POOLING, binarize_student, build_student, student_config, student_shape
    from edgebert.distill.vocab import coverage, prune
    from edgebert.distill.write import write_student
    from edgebert.model.checkpoint import load_checkpoint
    from edgebert.model.encoder import BertEncoder

    cfg = TrainConfig(steps=steps, minutes=minutes, batch_size=batch_size, max_length=max_length, lr=lr, seed=seed,
                      save_every=save_every, eval_every=save_every)
    student_shape(student)
    pooling = pooling or DEFAULT_POOLING
    out = Path(out_dir)
    state_dir = out / STATE_DIR
    if out.exists() and force:
        shutil.rmtree(out)
    if out.exists() and not state_dir.is_dir():
        raise InputError(f"{out}: expected a new output directory or an earlier distillation's, found something else "
                         "(use --force to replace it)")
    ckpt = load_checkpoint(teacher_dir)
    lines = read_lines(data)
    train, held = split(lines, seed, HELD_OUT)
    fingerprint = _fingerprint(teacher=ckpt.sha256, student=student, vocab=vocab_size, init=init, seed=seed,
                               data=hashlib.sha256("\n".join(lines).encode()).hexdigest(), batch=batch_size,
                               max_length=max_length, lr=lr, schedule="cosine", pooling=pooling, binarize=binarize)
    _check_resume(state_dir, fingerprint)
    progress("prepare", 0, 1)
    torch.manual_seed(seed)
    teacher = BertEncoder.from_checkpoint(ckpt)
    t_json = ckpt.tokenizer.to_str()
    t_tok = Tokenizer.from_str(t_json)
    t_tok.enable_truncation(max_length=max_length)  # count the pieces the student will see
    train_ids = [e.ids for e in t_tok.encode_batch(train)]
    held_ids = [e.ids for e in t_tok.encode_batch(held)]
    pruned = prune(t_json, Counter(i for row in train_ids for i in row), vocab_size or 10**9)
    s_tok = Tokenizer.from_str(pruned.tokenizer_json)
    specials = {ckpt.tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]") if ckpt.tokenizer.token_to_id(t)
                is not None}
    vocab_report = {"kept": len(pruned.old_ids), "original": ckpt.config.vocab_size, "required": pruned.required,
                    "held_out_coverage": coverage(held_ids, set(pruned.old_ids), specials)}
    scfg = student_config(student, ckpt.config, len(pruned.old_ids), init, 512)
    model = build_student(teacher, scfg, pruned.old_ids, init, seed, pooling)
    if binarize is not None:
        binarize_student(model, binarize)
    trainable = Trainable(model, ckpt.config.hidden_size)
    engine = Distiller(teacher, trainable, t_tok, s_tok, train, held, cfg, state_dir)
    resumed_at = engine.step if engine.load() else None
    progress("prepare", 1, 1)
    result = engine.run(progress)
    report = {"teacher": str(Path(teacher_dir).resolve()), "student": student, "config": model.config.to_dict(),
              "init": init, "pooling": pooling, "binarize": binarize, "resumed_from_step": resumed_at,
              "vocabulary": vocab_report, "training": result, "settings": asdict(cfg)}
    write_student(out, model, s_tok, max_length, report)
    return report


def _check_resume(state_dir: Path, fingerprint: str) -> None:
    mark = state_dir / "fingerprint"
    if (state_dir / "state.json").is_file() and mark.is_file() and mark.read_text(encoding="utf-8") != fingerprint:
        raise InputError(f"{state_dir.parent}: expected the state of a run with these settings (teacher, student, data, "
                         "vocabulary, seed) to resume, found another run's; use --force to start over")
    state_dir.mkdir(parents=True, exist_ok=True)
    mark.write_text(fingerprint, encoding="utf-8")


__all__ = ["distill"]
