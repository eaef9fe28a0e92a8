"""Flash and RAM budgets of target devices, and whether a build fits one (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from edgebert.errors import InputError

# The demo fleet's Cortex-M4 class (an STM32F4-like part): 256 KB RAM, 1 MB flash.
DEVICES = {"cortex-m4": (256_000, 1_000_000)}


@dataclass(frozen=True)
class Budget:
    ram: int
    flash: int
    device: str = ""

    def __post_init__(self) -> None:
        if self.ram <= 0 or self.flash <= 0:
            raise InputError(f"budget: expected positive --ram and --flash bytes, found ram={self.ram}, "
                             f"flash={self.flash}")

    def verdict(self, ram: int, flash: int) -> dict:
        """{"fits": bool, "ram_over": bytes, "flash_over": bytes, "message": one line}."""
        ram_over, flash_over = max(0, ram - self.ram), max(0, flash - self.flash)
        name = self.device or "the budget"
        if not ram_over and not flash_over:
            message = (f"fits {name}: flash {flash:,} of {self.flash:,} B, RAM {ram:,} of {self.ram:,} B")
        else:
            over = [f"{what} by {n:,} B ({used:,} > {limit:,})" for what, n, used, limit in
                    (("flash", flash_over, flash, self.flash), ("RAM", ram_over, ram, self.ram)) if n]
            message = f"does not fit {name}: over on {' and '.join(over)}"
        return {"fits": not ram_over and not flash_over, "ram_bytes": ram, "flash_bytes": flash,
                "ram_budget": self.ram, "flash_budget": self.flash, "ram_over": ram_over,
                "flash_over": flash_over, "device": self.device, "message": message}


def budget_for(device: str | None, ram: int | None, flash: int | None) -> Budget | None:
    """The budget named by ``--device`` or given by ``--ram``/``--flash`` (both), or None."""
    if device is not None:
        if ram is not None or flash is not None:
            raise InputError("--device: expected either --device or --ram/--flash, found both")
        if device not in DEVICES:
            raise InputError(f"--device: expected one of {', '.join(DEVICES)}, found {device!r}")
        r, f = DEVICES[device]
        return Budget(r, f, device)
    if (ram is None) != (flash is None):
        raise InputError("--ram/--flash: expected both (bytes), found only one")
    return Budget(ram, flash) if ram is not None and flash is not None else None


__all__ = ["DEVICES", "Budget", "budget_for"]
