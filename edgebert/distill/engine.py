"""Pre-trained distillation (Turc et al., "Well-Read Students Learn Better"): a compact student
learns the teacher's sentence embeddings and hidden states on unlabeled text (host, torch).

Loss per batch: ``1 - cos`` between the student's sentence embedding (pooled, projected to the
teacher's width by its Dense module, which ships with it) and the teacher's, plus the mean over
the student's layers (and its embedding output) of the per-token ``1 - cos`` between a learned
projection of the student's states and the matched teacher layer's (``student.layer_map``).

Deterministic and resumable: batch ``s`` is a function of the seed and ``s`` alone (a seeded
permutation per epoch), there is no dropout, and every ``save_every`` steps the trainable state
(student, projections, AdamW moments, step, curve) is written as safetensors + JSON (no pickle)
under ``OUT/.distill/``: files carry their step in the name and ``state.json``, replaced last and
atomically, names the complete set. A run killed at any point resumes from its last save and
ends with the weights an uninterrupted run of the same steps ends with.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgebert.distill.losses import sentence_direction, token_direction
from edgebert.distill.student import layer_map
from edgebert.errors import InputError
from edgebert.files import atomic_write
from edgebert.model.checkpoint import Pooling
from edgebert.model.encoder import BertEncoder, pool
from edgebert.model.tokenizer import encode_batch
from edgebert.progress import Progress, silent

STATE_DIR = ".distill"


LR_FLOOR = 0.05


@dataclass(frozen=True)
class TrainConfig:
    steps: int | None = None        # stop after this many steps (from the start of the run, resumes included)
    minutes: float | None = None    # or after this much wall time in this process
    batch_size: int = 32
    max_length: int = 32
    lr: float = 2e-3
    warmup: int = 50
    decay: bool = True              # cosine decay to LR_FLOOR x lr over the --steps/--minutes budget
    hidden_weight: float = 1.0
    eval_every: int = 100
    save_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:
            raise InputError("distill: expected --steps N or --minutes N, found neither")
        if (self.steps is not None and self.steps < 1) or (self.minutes is not None and not self.minutes > 0):
            raise InputError(f"distill: expected a positive --steps/--minutes, found {self.steps}/{self.minutes}")
        if not (1 <= self.batch_size <= 1024 and 8 <= self.max_length <= 512 and self.lr > 0):
            raise InputError("distill: expected batch size 1..1024, max length 8..512 and lr > 0")
        if self.save_every < 1 or self.eval_every < 1:
            raise InputError("distill: expected --save-every of at least 1")


class Trainable(nn.Module):
    """What the optimizer moves: the student (with its sentence projection) and one projection per
    matched layer from the student's width to the teacher's (training only)."""

    def __init__(self, student: BertEncoder, teacher_width: int) -> None:
        super().__init__()
        self.student = student
        width = student.config.hidden_size
        self.layers = nn.ModuleList(nn.Linear(width, teacher_width, bias=False)
                                    for _ in range(student.config.num_hidden_layers + 1))
        with torch.no_grad():
            for lin in self.layers:
                lin.weight.copy_(torch.eye(teacher_width, width))


def batch_indices(step: int, n: int, batch: int, seed: int) -> np.ndarray:
    """The training lines of batch ``step``: a function of (seed, step) alone."""
    start = step * batch
    out = []
    while len(out) < batch:
        epoch, pos = divmod(start + len(out), n)
        order = np.random.default_rng([seed, epoch]).permutation(n)
        take = min(batch - len(out), n - pos)
        out.extend(order[pos:pos + take].tolist())
    return np.asarray(out)


class Distiller:
    def __init__(self, teacher: BertEncoder, trainable: Trainable, teacher_tok: Any, student_tok: Any,  # noqa: ANN401
                 train: list[str], held_out: list[str], cfg: TrainConfig, state_dir: Path) -> None:
        self.teacher, self.trainable, self.cfg, self.state_dir = teacher.eval(), trainable, cfg, state_dir
        self.t_tok, self.s_tok, self.train, self.held_out = teacher_tok, student_tok, train, held_out
        self.map = [0] + [t + 1 for t in layer_map(trainable.student.config.num_hidden_layers,
                                                    teacher.config.num_hidden_layers)]
        params = list(trainable.parameters())
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
        self.step, self.curve, self.elapsed = 0, [], 0.0
        for tok in (teacher_tok, student_tok):
            tok.enable_truncation(max_length=cfg.max_length)
        self._held_teacher: torch.Tensor | None = None

    # ------------------------------------------------------------------ one step
    def _encode(self, tok: Any, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN401
        ids, mask = encode_batch(tok, texts)
        return torch.from_numpy(ids), torch.from_numpy(mask)

    def loss(self, texts: list[str]) -> torch.Tensor:
        t_ids, t_mask = self._encode(self.t_tok, texts)
        s_ids, s_mask = self._encode(self.s_tok, texts)
        with torch.no_grad():
            t_states = self.teacher.hidden_states(t_ids, t_mask)
            # the teacher's sentence embedding from the same forward pass (a second pass doubled the step)
            t_sent = pool(t_states[-1], t_mask, self.teacher.pooling or Pooling(), self.teacher.projection)
        student = self.trainable.student
        s_states = student.hidden_states(s_ids, s_mask)
        s_sent = pool(s_states[-1], s_mask, student.pooling, student.projection)
        loss = sentence_direction(s_sent, t_sent)
        if self.cfg.hidden_weight:
            mean = Pooling("mean")
            # every layer: its mean-pooled state's direction (whatever the tokenization) ...
            hidden = [sentence_direction(proj(pool(s, s_mask, mean)), pool(t_states[t], t_mask, mean))
                      for proj, s, t in zip(self.trainable.layers, s_states, self.map, strict=True)]
            if t_ids.shape == s_ids.shape and torch.equal(t_ids != 0, s_ids != 0) and torch.equal(t_mask, s_mask):
                # ... and each token's, when both tokenizers cut the batch into the same pieces (a
                # pruned vocabulary may spell a rare word in more pieces)
                hidden += [token_direction(proj(s), t_states[t], s_mask)
                           for proj, s, t in zip(self.trainable.layers, s_states, self.map, strict=True)]
            loss = loss + self.cfg.hidden_weight * torch.stack(hidden).mean()
        return loss

    def _lr(self, step: int) -> float:
        warm = min(1.0, (step + 1) / max(self.cfg.warmup, 1))
        if not self.cfg.decay:
            return self.cfg.lr * warm
        cos = 0.5 * (1.0 + math.cos(math.pi * min(self.progress_fraction, 1.0)))
        return self.cfg.lr * warm * (LR_FLOOR + (1.0 - LR_FLOOR) * cos)

    @property
    def progress_fraction(self) -> float:
        """How far through its budget the run is: steps done of --steps (deterministic, so a resumed run
        takes the same rates), else this process's wall time of --minutes."""
        if self.cfg.steps is not None:
            return self.step / self.cfg.steps
        started = getattr(self, "started", None)
        if started is None or self.cfg.minutes is None:
            return 0.0
        return (time.monotonic() - started) / (self.cfg.minutes * 60)

    def train_step(self) -> float:
        idx = batch_indices(self.step, len(self.train), self.cfg.batch_size, self.cfg.seed)
        for group in self.opt.param_groups:
            group["lr"] = self._lr(self.step)
        loss = self.loss([self.train[i] for i in idx])
        if not torch.isfinite(loss):
            raise InputError(f"distill: expected a finite loss, found {float(loss)} at step {self.step}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable.parameters(), 1.0)
        self.opt.step()
        self.step += 1
        return float(loss.detach())

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def held_out_cosine(self) -> float:
        """Mean cosine of the student's sentence embeddings to the teacher's on the held-out lines."""
        if not self.held_out:
            return float("nan")
        if self._held_teacher is None:
            self._held_teacher = torch.cat([self.teacher.sentence_embedding(*self._encode(self.t_tok, chunk))
                                            for chunk in _chunks(self.held_out, 64)])
        student = self.trainable.student.eval()
        s = torch.cat([student.sentence_embedding(*self._encode(self.s_tok, chunk))
                       for chunk in _chunks(self.held_out, 64)])
        return float(torch.nn.functional.cosine_similarity(s, self._held_teacher, dim=-1).mean())

    # ------------------------------------------------------------------ the loop
    def run(self, progress: Progress = silent) -> dict[str, Any]:
        cfg, started = self.cfg, time.monotonic()
        base = self.elapsed
        total = cfg.steps if cfg.steps is not None else math.inf
        self.started = started
        if not self.curve:
            self.curve.append({"step": 0, "seconds": 0.0, "held_out_cosine": self.held_out_cosine()})
        while self.step < total:
            if cfg.minutes is not None and time.monotonic() - started >= cfg.minutes * 60:
                break
            loss = self.train_step()
            self.elapsed = base + time.monotonic() - started
            if self.step % cfg.eval_every == 0 or self.step == total:
                self.curve.append({"step": self.step, "seconds": round(self.elapsed, 1), "loss": round(loss, 5),
                                   "held_out_cosine": self.held_out_cosine()})
            if self.step % cfg.save_every == 0 or self.step == total:
                self.save()
            cosine = self.curve[-1]["held_out_cosine"]
            progress(f"distill (held-out cosine {cosine:.3f})", self.step,
                     int(total) if total != math.inf else max(self.step, 1))
        if self.curve[-1]["step"] != self.step:
            self.curve.append({"step": self.step, "seconds": round(self.elapsed, 1),
                               "held_out_cosine": self.held_out_cosine()})
        self.save()
        return {"steps": self.step, "seconds": round(self.elapsed, 1), "curve": self.curve,
                "held_out_cosine": self.curve[-1]["held_out_cosine"], "held_out_lines": len(self.held_out),
                "train_lines": len(self.train), "config": asdict(cfg)}

    # ------------------------------------------------------------------ state on disk
    def save(self) -> None:
        from safetensors.torch import save_file

        d = self.state_dir
        d.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().contiguous() for k, v in self.trainable.state_dict().items()}
        moments: dict[str, torch.Tensor] = {}
        for i, state in self.opt.state_dict()["state"].items():
            for key, value in state.items():
                moments[f"{i}.{key}"] = torch.as_tensor(value).detach().clone().contiguous()
        for name, tensors in ((f"trainable-{self.step}.safetensors", weights), (f"optim-{self.step}.safetensors",
                                                                               moments)):
            tmp = d / f".{name}.tmp"
            save_file(tensors, str(tmp))
            tmp.replace(d / name)
        atomic_write(d / "state.json", json.dumps({"step": self.step, "elapsed": self.elapsed, "curve": self.curve,
                                                    "config": asdict(self.cfg)}, default=str))
        for old in d.glob("*.safetensors"):
            if not old.name.endswith(f"-{self.step}.safetensors"):
                old.unlink(missing_ok=True)

    def load(self) -> bool:
        """Resume from ``state_dir`` if a save is there; returns whether it was."""
        from safetensors.torch import load_file

        path = self.state_dir / "state.json"
        if not path.is_file():
            return False
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            step = int(state["step"])
            self.trainable.load_state_dict(load_file(str(self.state_dir / f"trainable-{step}.safetensors")))
            moments = load_file(str(self.state_dir / f"optim-{step}.safetensors"))
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise InputError(f"{self.state_dir}: expected a distillation state to resume from, found a damaged one "
                             f"({exc}); remove it to start over") from None
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in moments.items():
            i, name = key.split(".", 1)
            opt_state.setdefault(int(i), {})[name] = value
        self.opt.load_state_dict({"state": opt_state, "param_groups": self.opt.state_dict()["param_groups"]})
        self.step, self.elapsed, self.curve = step, float(state.get("elapsed", 0.0)), list(state.get("curve", []))
        return True


def _chunks(items: list[str], n: int) -> list[list[str]]:
    return [items[i:i + n] for i in range(0, len(items), n)]


__all__ = ["STATE_DIR", "Distiller", "TrainConfig", "Trainable", "batch_indices"]
