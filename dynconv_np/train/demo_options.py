"""The demo's options: one frozen record of what a comparison trains (``DemoOptions``), and the
defaults behind ``python -m dynconv_np demo`` (``train/demo.py`` says why each is what it is)."""
from dataclasses import dataclass

from .loop import TrainConfig
from ..backends import DEFAULT_BACKEND
from .schedules import ConstantTemperature, LinearTemperature
from ..models.builder import check_variant
from ..models.small import small_cnn

DEFAULTS = dict(dataset="digits-mixed", epochs=20, seeds=10, width=2, num_kernels=4,
                batch_size=32, lr=0.1, weight_decay=5e-4, tau_start=30.0, anneal_fraction=0.1,
                backend=DEFAULT_BACKEND, variant="dyconv")
VARIANT_NAMES = {"dyconv": "DyConv", "condconv": "CondConv", "odconv": "ODConv", "dcd": "DCD"}
MONITOR_IMAGES = 256        # test images the per-epoch attention monitor looks at


@dataclass(frozen=True)
class DemoOptions:
    """What one comparison trains: the networks (width, K, attention width, backend), the
    training (epochs, batch, SGD lr and weight decay) and tau (``schedule``, or linear from
    ``tau_start`` to 1 over ``anneal_epochs``: None = 10 % of the epochs; ``anneal=False``:
    tau = 1 throughout); ``variant``: the dynamic net's layer, "dyconv" (DynamicConv2d),
    "condconv", "odconv" or "dcd" (``models.builder``)."""
    epochs: int = DEFAULTS["epochs"]
    seeds: int = DEFAULTS["seeds"]
    width: int = DEFAULTS["width"]
    num_kernels: int = DEFAULTS["num_kernels"]
    batch_size: int = DEFAULTS["batch_size"]
    lr: float = DEFAULTS["lr"]
    weight_decay: float = DEFAULTS["weight_decay"]
    tau_start: float = DEFAULTS["tau_start"]
    anneal_epochs: float = None
    anneal: bool = True
    schedule: object = None
    attention_hidden: int = None
    backend: str = DEFAULTS["backend"]
    progress: bool = True
    static_width: int = None    # the static network's width (default: ``width``)
    variant: str = DEFAULTS["variant"]

    def __post_init__(self):
        if check_variant(self.variant) is None:
            raise ValueError(f"variant must name a dynamic layer; received {self.variant!r}")

    @property
    def variant_name(self):
        """"DyConv", "CondConv", "ODConv" or "DCD"."""
        return VARIANT_NAMES[check_variant(self.variant)]

    @property
    def has_temperature(self):
        """Whether the variant's layers have a temperature (DyConv, ODConv) to anneal."""
        return check_variant(self.variant) in ("dyconv", "odconv")

    @property
    def temperature_schedule(self):
        if self.schedule is not None:
            return self.schedule
        if not self.anneal:
            return ConstantTemperature(1.0)
        anneal = (DEFAULTS["anneal_fraction"] * self.epochs if self.anneal_epochs is None
                  else self.anneal_epochs)
        return LinearTemperature(self.tau_start, 1.0, anneal, per_iteration=True)

    def config(self):
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           weight_decay=self.weight_decay,
                           temperature_schedule=self.temperature_schedule)

    def build(self, dataset, dynamic, seed):
        width = self.width if dynamic or self.static_width is None else self.static_width
        schedule = self.temperature_schedule
        return small_cnn(dataset.image_shape, dataset.num_classes, width=width,
                         dynamic=check_variant(self.variant) if dynamic else False,
                         num_kernels=self.num_kernels,
                         temperature=schedule.tau_at(0, 0, 1), backend=self.backend, rng=seed,
                         attention_hidden=self.attention_hidden)
