"""The demo's report directory: report.md, PNG plots, fleet.csv and report.json (the data behind them)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from edgebert.files import atomic_write


def _mb(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def _bytes_h(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            return f"{n / size:.0f} {unit}"
    return f"{n} B"


def _plt():  # noqa: ANN202 - matplotlib.pyplot, headless
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rounds(fed: dict[str, Any], path: Path) -> None:
    plt = _plt()
    rounds = [0] + [r["round"] + 1 for r in fed["rounds"]]
    unseen = [fed["unseen_mse_initial"]] + [r["unseen_mse"] for r in fed["rounds"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(rounds, unseen, "o-", label=f"unseen devices: MSE after {fed['shots']}-shot adaptation")
    before = [r["loss_before"] for r in fed["rounds"]]
    after = [r["loss_after"] for r in fed["rounds"]]
    if all(v is not None for v in before + after):
        ax.plot(rounds[1:], before, "s--", alpha=0.6, label="participants: loss at the round's start")
        ax.plot(rounds[1:], after, "^--", alpha=0.6, label=f"participants: loss after {fed['inner_steps']} local steps")
    ax.set_xlabel("federated round (0 = the provisioned artifact)")
    ax.set_ylabel("MSE (vibration task)")
    ax.set_yscale("log")
    ax.set_title(f"Reptile over MQTT: {fed['devices']} devices, {fed['per_round']} per round")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def _accuracy_axes(ax: Any, title: str, xlabel: str, per: int) -> None:  # noqa: ANN401 - matplotlib Axes
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"prequential accuracy (per {per})")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def plot_adaptation(adaptation: dict[str, Any], path: Path) -> None:
    plt = _plt()
    d, t = adaptation["digits"], adaptation["text"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    xs = [(i + 1) * d["bin"] for i in range(len(d["frozen_curve"]))]
    a1.plot(xs, d["frozen_curve"], "o-", label="provisioned int8 net, frozen")
    a1.plot(xs, d["adapting_curve"], "s-", label="C head learning on the device (TinyOL)")
    _accuracy_axes(a1, f"Camera devices ({d['devices']}): own sensor gain/offset", "samples seen", d["bin"])
    xs = [(i + 1) * t["bin"] for i in range(len(t["curve"]))]
    a2.plot(xs, t["curve"], "o-", color="tab:green", label="classifier head on the int8 encoder")
    a2.axvline(t["new_topic_at"], color="gray", ls="--", label="a new topic appears")
    _accuracy_axes(a2, f"Text devices ({t['devices']}): topics learned online", "sentences seen", t["bin"])
    fig.tight_layout()
    _save(fig, path)


def plot_fleet(fleet: list[dict[str, Any]], path: Path) -> None:
    plt = _plt()
    artifacts = sorted({r["artifact"] or "(none)" for r in fleet})
    kinds = sorted({r["kind"] for r in fleet})
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(artifacts) + 1.8))
    left = [0] * len(artifacts)
    for kind in kinds:
        counts = [sum(1 for r in fleet if (r["artifact"] or "(none)") == a and r["kind"] == kind) for a in artifacts]
        ax.barh(artifacts, counts, left=left, label=kind)
        left = [x + c for x, c in zip(left, counts, strict=True)]
    ax.set_xlabel("devices")
    ax.set_title("Fleet by active artifact")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:  # noqa: ANN401 - a matplotlib Figure
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def fleet_csv(fleet: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fleet[0]))
    writer.writeheader()
    writer.writerows(fleet)
    return buf.getvalue()


def markdown(r: dict[str, Any]) -> str:
    a, fed, ad, q = r["artifacts"], r["federated"], r["adaptation"], r["registry_answers"]
    fleet = r["fleet"]
    ok = sum(1 for f in fleet if f["result"] in ("active", "up to date"))
    mcu = [f for f in fleet if f.get("runtime") in ("c99", "tflite-micro")]
    max_flash = max((f["measured_flash_bytes"] or 0 for f in mcu), default=0)
    max_ram = max((f["measured_ram_bytes"] or 0 for f in mcu), default=0)
    lines = [
        "# EdgeBERT demo report", "",
        f"Broker {r['broker']}; registry {r['registry']}; {len(fleet)} simulated devices "
        f"(each its own MQTT connection and state directory); {r['timings_s']['total']:.0f} s in all.", "",
        "## Summary", "",
        f"- **Provisioned**: {ok} of {len(fleet)} devices run the registry's best compatible artifact "
        "(signed offer, sha256-checked chunks, self-test on the device).",
        f"- **Federated meta-learning** (Reptile, {len(fed['rounds'])} rounds over MQTT): unseen devices' MSE after "
        f"{fed['shots']}-shot adaptation {fed['unseen_mse_initial']:.3f} → {fed['unseen_mse_final']:.3f} "
        f"({'better' if fed['unseen_mse_final'] < fed['unseen_mse_initial'] else 'NOT better'}).",
        f"- **Microcontrollers**: {len(mcu)} Cortex-M4 devices run the exported C firmware; measured on a "
        f"Cortex-M4 build (QEMU) their firmware needs at most {max_flash:,} B flash and {max_ram:,} B RAM, and "
        f"{sum(1 for f in mcu if f['fits'])} of {len(mcu)} fit their Thing Description's budget.",
        f"- **Online adaptation**: camera devices {ad['digits']['frozen_last_100']:.3f} (frozen) vs "
        f"{ad['digits']['adapting_last_100']:.3f} (the firmware's C head learning) accuracy over their last 100 "
        "samples; text devices "
        f"{ad['text']['accuracy_last_20']:.3f} over their last 20 sentences, new topic "
        f"{ad['text']['new_topic_accuracy_after_5']:.3f} after 5 examples.",
        *_text_mcu_summary(r), *_binary_summary(r),
        f"- **Update**: the meta-learned model became artifact `{a['sine_meta']['id']}`; the registry named "
        f"{len(q['who_needed_an_update'])} devices as needing it, and a second provisioning pass installed it "
        "(their previous artifact kept on the device and recorded in the registry).", "",
        "![federated rounds](rounds.png)", "", "![adaptation](adaptation.png)", "", "![fleet](fleet.png)", "",
        "## Artifacts", "",
        "| artifact | family | precision | model file | flash | peak RAM | fidelity (mean / worst) | latency | fp32 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in a.values():
        fid = (f"{s['fidelity_metric']}: {s['fidelity_mean']:.4f} / {s['fidelity_worst']:.4f}"
               if s["fidelity_mean"] is not None else "-")
        lat = f"{s['latency_ms']:.3f} ms" if s["latency_ms"] is not None else "-"
        fp = f"{s['fp32_latency_ms']:.3f} ms" if s["fp32_latency_ms"] is not None else "-"
        lines.append(f"| `{s['id']}` | {s['family']} | {s['precision']} | {_mb(s['model_bytes'])} | "
                     f"{_mb(s['flash_bytes'])} | {_mb(s['peak_ram_bytes'])} | {fid} | {lat} | {fp} |")
    lines += _fleet_section(fleet)
    lines += ["", "## Federated rounds", "",
              f"{fed['devices']} vibration devices (each its own sine task), {fed['per_round']} per round, "
              f"{fed['inner_steps']} local steps; unseen = {fed['unseen_devices']} devices never in a round.", "",
              "| round | participants | closed by | wall s | participants' loss before → after | unseen MSE |",
              "|---|---|---|---|---|---|"]
    for row in fed["rounds"]:
        loss = (f"{row['loss_before']:.3f} → {row['loss_after']:.3f}" if row["loss_before"] is not None else "-")
        lines.append(f"| {row['round'] + 1} | {row['participants']} | {row['closed_by']} | {row['wall_s']:.2f} | "
                     f"{loss} | {row['unseen_mse']:.3f} |")
    return "\n".join(lines + _registry_section(q) + [
        "", "## Time per step (s)", "", "| " + " | ".join(r["timings_s"]) + " |",
        "|" + "---|" * len(r["timings_s"]), "| " + " | ".join(f"{v:.1f}" for v in r["timings_s"].values()) + " |",
        "", "Files: `report.json` (everything above), `fleet.csv`, `rounds.png`, `adaptation.png`, `fleet.png`; "
        "`artifacts/`, `devices/<name>/` (each device's artifacts and active.json), `registry/`, `keys/`.", ""])


def _text_mcu_summary(r: dict[str, Any]) -> list[str]:
    t = r["adaptation"].get("text_mcu")
    if not t or not t["rows"]:
        return []
    row, d = t["rows"][0], r.get("student_distill")
    made = (f"a BERT-Tiny student distilled from the teacher for {d['steps']} steps ({d['seconds']:.0f} s; held-out "
            f"cosine {d['held_out_cosine']:.3f}; {d['vocabulary']['kept']:,} word rows)" if d else
            "the BERT-Tiny-sized text model itself")
    return [f"- **Text on a microcontroller**: {t['devices']} keyword-sensor Cortex-M4 device(s) run {made} as "
            f"integer-only C firmware: {row['flash_bytes']:,} B flash (budget 1,000,000) and {row['ram_bytes']:,} B RAM "
            f"(target 64,000), {row['instructions']:,} instructions for {row['tokens']} tokens (QEMU); its embeddings' "
            f"cosine to the teacher's ({t['teacher']}) on {t['sentences']} held-out sentences: "
            f"{t['cosine_mean']:.3f} mean."]


def _binary_summary(r: dict[str, Any]) -> list[str]:
    a = r["artifacts"]
    if "digits_bin_fw" not in a:
        return []
    b, fw, fw8 = a["digits_bin"], a["digits_bin_fw"], a["digits_fw"]
    on = [f["device"] for f in r["fleet"] if f["artifact"] == fw["id"]]
    agree = f"{b['fidelity_argmax']:.3f} of its decisions agree with the fp32 net's" if b.get("fidelity_argmax") else ""
    return [f"- **Binarized**: the digits net with 1-bit weights (W1A8, distilled through them): {agree}; its "
            f"Cortex-M4 firmware needs {fw['flash_bytes']:,} B flash against the int8 firmware's "
            f"{fw8['flash_bytes']:,} B, so the registry matched it, by the measured sizes, to "
            f"{len(on)} low-flash camera device(s) ({', '.join(on) or 'none'}) that the int8 one does not fit."]


def _fleet_section(fleet: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Fleet", "", "Measured: flash and RAM of the firmware's Cortex-M4 build (inference and head "
             "learning), against the device's budget.", "",
             "| device | kind | RAM | flash | runtime | measured flash / RAM | first artifact | now running | previous | sent |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for f in fleet:
        used = (f"{f['measured_flash_bytes']:,} / {f['measured_ram_bytes']:,} B ({'fits' if f['fits'] else 'OVER'})"
                if f.get("measured_flash_bytes") else "-")
        lines.append(f"| {f['device']} | {f['kind']} | {_bytes_h(f['ram_bytes'])} | {_bytes_h(f['flash_bytes'])} | "
                     f"{f.get('runtime') or '-'} | {used} | "
                     f"`{f['first_artifact']}` ({f['first_result']}) | `{f['artifact']}` ({f['result']}) | "
                     f"{'`' + f['previous'] + '`' if f['previous'] else '-'} | {_mb(f['bytes_sent'])} |")
    return lines


def _registry_section(q: dict[str, Any]) -> list[str]:
    lines = ["", "## Registry questions", "", "**Which artifacts fit each kind of device?**", ""]
    for fit in q["which_artifacts_fit"]:
        lines.append(f"- {fit['kind']} ({fit['device']}): {', '.join('`' + m + '`' for m in fit['matches']) or 'none'}")
    lines += ["", "**What runs where?** (active deployments)", ""]
    lines += [f"- `{art}`: {n} devices" for art, n in sorted(q["what_runs_where"].items())]
    lines += ["", "**Who needed an update** (a newer version of their artifact's family that fits them)?", ""]
    lines += [f"- {o['device']}: `{o['current']}` → `{o['newer']}`" for o in q["who_needed_an_update"]] or ["- nobody"]
    lines += ["", "**Deployment history of one device**", ""]
    lines += [f"- {h['time']}: `{h['artifact']}` {h['status']}" + (f" (previous `{h['previous']}`)" if h["previous"] else "")
              for h in q["deployment_history_of_one_device"]]
    lines += ["", "**Lineage of the meta-learned artifact** (PROV-O)", ""]
    lines += [f"- depth {row.get('depth')}: {row.get('type', '').rsplit('#', 1)[-1]} {row.get('name') or row.get('entity')}"
              for row in q["lineage_of_meta_artifact"]]
    return lines


def write_report(out: Path, result: dict[str, Any]) -> None:
    plot_rounds(result["federated"], out / "rounds.png")
    plot_adaptation(result["adaptation"], out / "adaptation.png")
    plot_fleet(result["fleet"], out / "fleet.png")
    atomic_write(out / "fleet.csv", fleet_csv(result["fleet"]))
    atomic_write(out / "report.json", json.dumps(result, indent=2, default=str))
    atomic_write(out / "report.md", markdown(result))
