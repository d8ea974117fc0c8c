"""The demo's picture (``--plot FILE.png``, matplotlib): learning curves of both nets, tau and
the kernels' cosine over training, and each dynamic layer's attention on the test images."""
import numpy as np

from .demo_options import DemoOptions
from ..diagnostics import collect_attention


def plot(path, dataset, results, options=None):
    """Learning curves of both nets (mean over seeds, band from min to max), tau and the
    kernels' pairwise cosine over training, and each dynamic layer's attention distribution on
    the test images (seed 0), into ``path`` (PNG). Needs matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # noqa: E402 (a file, not a screen)
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("--plot needs matplotlib (pip install matplotlib); the run itself "
                          "does not") from error
    options = options or DemoOptions()
    pis = collect_attention(results["dynamic"][0]["model"], dataset.x_test)
    columns = max(2, len(pis))
    fig, axes = plt.subplots(2, columns, figsize=(5.2 * columns, 8.4), squeeze=False)
    epochs = np.arange(1, options.epochs + 1)
    ax = axes[0, 0]
    for name, color in (("static", "C0"), ("dynamic", "C3")):
        for key, style in (("test_acc", "-"), ("train_acc", ":")):
            curves = 100 * np.array([[e[key] for e in r["history"].epochs]
                                     for r in results[name]])
            ax.plot(epochs, curves.mean(axis=0), style, color=color,
                    label=f"{name}, {'test' if key == 'test_acc' else 'train (running)'}")
            if key == "test_acc":
                ax.fill_between(epochs, curves.min(axis=0), curves.max(axis=0), color=color,
                                alpha=0.15)
    ax.set(xlabel="epoch", ylabel="accuracy %",
           title=f"learning curves on {dataset.name} (mean over {options.seeds} seeds)")
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[0, 1]
    schedule = options.temperature_schedule
    t = np.linspace(0, options.epochs, 400, endpoint=False)
    ax.plot(t, [schedule.tau(v if schedule.per_iteration else np.floor(v)) for v in t],
            color="k", label="tau")
    ax.set(xlabel="epoch", ylabel="tau", title="temperature schedule and kernel collapse")
    twin = ax.twinx()
    cosine = np.array([[e.get("kernel_cosine", np.nan) for e in r["history"].epochs]
                       for r in results["dynamic"]])
    twin.plot(epochs, cosine.mean(axis=0), "o-", color="C2", ms=3,
              label="kernels' mean pairwise cosine")
    twin.set_ylim(-0.05, 1.05)
    twin.set_ylabel("mean pairwise cosine of the K kernels", color="C2")
    ax.legend(loc="upper right", fontsize=8)
    twin.legend(loc="center right", fontsize=8)
    for ax in axes[0, 2:]:
        ax.axis("off")
    styles = getattr(dataset, "style_test", None)
    for index, pi in enumerate(pis):
        ax = axes[1, index]
        k = pi.shape[1]
        parts = ax.violinplot([pi[:, j] for j in range(k)], positions=range(k), showmeans=True)
        for body in parts["bodies"]:
            body.set_alpha(0.35)
        if styles is not None:
            from .mixed_digits import STYLES
            for s, name in enumerate(STYLES):
                ax.plot(range(k), pi[styles == s].mean(axis=0), "o-", ms=3, lw=1,
                        label=f"mean, {name}")
            ax.legend(fontsize=7, loc="upper right")
        ax.axhline(1 / k, color="grey", ls=":")
        ax.set(xticks=range(k), xticklabels=[f"W{j + 1}" for j in range(k)], ylim=(0, 1),
               ylabel="pi_k", title=f"dynamic layer {index + 1}: pi on the test images (seed 0)")
    for ax in axes[1, len(pis):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True
