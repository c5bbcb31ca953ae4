"""``progress.png``: losses, validation metrics, learning rate and epoch time over the epochs."""
from __future__ import annotations

import os

from lesionnet.utils.files import atomic_path

#: validation metrics in percent (tracking: CPM; detection: AS, sensitivities, AP), drawn on one axis
PERCENT_METRICS = ("cpm", "AS", "sens@", "AP@")


def plot_progress(history: list[dict], path: str | os.PathLike, title: str = "") -> None:
    """Write the training curves of ``history`` (one dict per epoch: ``epoch``, ``train_*`` losses,
    ``val_*`` metrics, ``learning_rate``, ``epoch_seconds``) to ``path`` (PNG, atomically)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(4, 1, figsize=(9, 12), sharex=True)
    for key in sorted({k for h in history for k in h if k.startswith("train_")}):
        axes[0].plot(epochs, [h.get(key) for h in history], label=key[len("train_"):])
    axes[0].set_ylabel("training loss")
    axes[0].set_yscale("symlog", linthresh=1e-2)
    axes[0].legend(loc="upper right")
    ax_percent, ax_med = axes[1], axes[1].twinx()
    percent_keys = sorted({k for h in history for k in h if k.startswith("val_") and k[4:].startswith(PERCENT_METRICS)})
    for key in percent_keys:
        ax_percent.plot(epochs, [h.get(key) for h in history], label=key[4:])
    if any("val_med_mm" in h for h in history):
        ax_med.plot(epochs, [h.get("val_med_mm") for h in history], color="tab:red", label="MED (mm)")
        ax_med.set_ylabel("validation MED (mm)", color="tab:red")
    ax_percent.set_ylabel("validation (%)")
    if percent_keys:
        ax_percent.legend(loc="upper left", fontsize="small")
    axes[2].plot(epochs, [h["learning_rate"] for h in history], color="tab:purple")
    axes[2].set_ylabel("learning rate")
    axes[3].plot(epochs, [h["epoch_seconds"] for h in history], color="tab:gray")
    axes[3].set_ylabel("epoch time (s)")
    axes[3].set_xlabel("epoch")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
