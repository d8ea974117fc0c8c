"""The network benchmark (``python -m dynconv_np bench --networks``): whole DY networks, a
training step and an inference, on our CPU backends against the same network in PyTorch.

Suite (float32, K = 4, tau = 30, parameters from seed 0, fixed random inputs and labels):

    name                  input                classes  timed
    DY-CNN digits         32 x 1 x 8 x 8       10       training step, inference
    DY-ResNet-10 x0.25    32 x 3 x 32 x 32     10       training step, inference
    DY-MobileNetV2 x0.35  32 x 3 x 32 x 32     10       training step, inference
    DY-MobileNetV3-Small  1 x 3 x 224 x 224    1000     inference

A training step is ``train.loop.train_step``: zero the gradients, forward in training mode
(BatchNorm on batch statistics, dropout on), cross-entropy, backward, one ``train.optim.SGD``
update (lr 1e-4, Nesterov momentum 0.9, weight decay 5e-4 on the weights ``optim.decays``
picks); an inference is one forward of a second copy of the network kept in eval mode.

The PyTorch twin is built by ``torch_twin``, a translator that walks our module tree and
builds, for each module, the torch module with the same math and a copy of the same
parameters and buffers (``DynamicConv2d``: the attention branch and one grouped convolution
over the batch, the grouped-convolution trick of ``layers.py``). Its training step is the same
(``F.cross_entropy``, ``torch.optim.SGD`` with the same groups); its inference runs under
``torch.inference_mode``. ``check_twin`` verifies the translation in float64 (one training step:
logits, loss, every gradient, the parameters and running statistics after the update, then
eval-mode logits) before anything is timed.

PyTorch is timed twice: with oneDNN (its default) and with ``torch.backends.mkldnn.flags(
enabled=False)`` (its native kernels), because oneDNN's grouped convolution is pathological on
some of these shapes; the ratios compare against the faster of the two. Every library is timed
in phases of its own, alternating over rounds (``timing.time_in_rounds``). Peak memory of a
training step: tracemalloc (NumPy allocations, our backends) in this process and, except with
``--tiny``, the rise of the resident set in a fresh process per library (``rss_step_peak``).
"""
import contextlib
import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np

from . import memory
from .torch_twin import torch_twin
from .layers import import_torch  # noqa: F401 (_RSS_SCRIPT calls networks.import_torch)

DTYPE = np.float32
SEED = 0
NUM_KERNELS = 4
# SGD with Nesterov momentum. A small rate: every timed step trains on the same batch, and at
# 0.01 MobileNetV2's BatchNorms on 1 x 1 maps drive it to inf within ten steps
LR, MOMENTUM, WEIGHT_DECAY = 1e-4, 0.9, 5e-4
CHECK_TOLERANCE = 1e-10  # float64 twin check: largest relative difference allowed
CHECK_BATCH = 8          # the twin check's batch (BatchNorm of a 1 x 1 map is ill-conditioned on 4)
# (library name, oneDNN on): PyTorch's two ways of running the same twin
TORCH_LIBRARIES = (("torch", True), ("torch-nodnn", False))
TITLES = {"torch": "torch (oneDNN)", "torch-nodnn": "torch (no oneDNN)"}
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}  # large blocks mapped and unmapped: RSS = live


# -- the networks ----------------------------------------------------------------------------
def dy_resnet10(width=0.25, num_classes=10, num_kernels=NUM_KERNELS, temperature=30.0,
                backend="numba", dtype=DTYPE, rng=None):
    """DY-ResNet-10 with every stage's channels scaled by ``width`` (64 w, 128 w, 256 w, 512 w):
    ``models.resnet.resnet10(dynamic=True)`` built from the same blocks, which has no width
    multiplier of its own."""
    from ..models.builder import LayerBuilder
    from ..models.resnet import STAGE_CHANNELS, basic_block
    from ..nn import GlobalAvgPool2d, MaxPool2d, ReLU, Sequential
    builder = LayerBuilder(True, num_kernels, temperature, backend, dtype, rng)
    stages = [max(1, int(round(c * width))) for c in STAGE_CHANNELS]
    stem = Sequential(builder.conv(3, stages[0], 7, stride=2, static=True),
                      builder.batch_norm(stages[0]), ReLU(), MaxPool2d(3, stride=2, padding=1))
    blocks, channels = [], stages[0]
    for stage, out_channels in enumerate(stages):
        blocks.append(basic_block(builder, channels, out_channels, 1 if stage == 0 else 2))
        channels = out_channels
    head = Sequential(GlobalAvgPool2d(), builder.linear(channels, num_classes))
    return Sequential(stem, *blocks, head)


def _digits(spec, backend, dtype):
    from ..models.small import small_cnn
    return small_cnn((spec.channels, spec.size, spec.size), spec.num_classes, width=2,
                     dynamic=True, num_kernels=NUM_KERNELS, backend=backend, dtype=dtype,
                     rng=SEED)


def _resnet(spec, backend, dtype):
    return dy_resnet10(0.25, spec.num_classes, backend=backend, dtype=dtype, rng=SEED)


def _mobilenet_v2(spec, backend, dtype):
    from ..models.mobilenetv2 import mobilenet_v2
    return mobilenet_v2(0.35, dynamic=True, num_kernels=NUM_KERNELS,
                        num_classes=spec.num_classes, backend=backend, dtype=dtype, rng=SEED)


def _mobilenet_v3(spec, backend, dtype):
    from ..models.mobilenetv3 import mobilenet_v3_small
    return mobilenet_v3_small(dynamic=True, num_kernels=NUM_KERNELS,
                              num_classes=spec.num_classes, backend=backend, dtype=dtype,
                              rng=SEED)


BUILDERS = {"digits": _digits, "resnet": _resnet, "mobilenet_v2": _mobilenet_v2,
            "mobilenet_v3": _mobilenet_v3}


@dataclass(frozen=True)
class NetworkSpec:
    """One network of the suite and its input: ``batch`` x ``channels`` x ``size`` x ``size``.
    ``train``: time a training step (else inference only); ``memory``: report the peak memory
    of a training step."""
    name: str
    model: str
    batch: int
    channels: int
    size: int
    num_classes: int
    train: bool = True
    memory: bool = False

    def build(self, backend, dtype=DTYPE):
        """Our network on ``backend``: the same parameters for every backend and dtype."""
        return BUILDERS[self.model](self, backend, np.dtype(dtype))

    def inputs(self, batch=None, dtype=DTYPE):
        """(x, labels): fixed random images (N, C, H, W) and integer labels (N,)."""
        batch = self.batch if batch is None else batch
        rng = np.random.default_rng(SEED)
        x = rng.standard_normal((batch, self.channels, self.size, self.size)).astype(dtype)
        return x, rng.integers(0, self.num_classes, batch)


SUITE = (NetworkSpec("DY-CNN digits", "digits", 32, 1, 8, 10),
         NetworkSpec("DY-ResNet-10 x0.25", "resnet", 32, 3, 32, 10, memory=True),
         NetworkSpec("DY-MobileNetV2 x0.35", "mobilenet_v2", 32, 3, 32, 10, memory=True),
         NetworkSpec("DY-MobileNetV3-Small", "mobilenet_v3", 1, 3, 224, 1000, train=False))

# --tiny: the same networks on smaller batches and images, for a smoke run in seconds
TINY_SUITE = (NetworkSpec("DY-CNN digits", "digits", 4, 1, 8, 10),
              NetworkSpec("DY-ResNet-10 x0.25", "resnet", 4, 3, 16, 10, memory=True),
              NetworkSpec("DY-MobileNetV2 x0.35", "mobilenet_v2", 4, 3, 16, 10, memory=True),
              NetworkSpec("DY-MobileNetV3-Small", "mobilenet_v3", 1, 3, 32, 1000, train=False))


def find_network(suite, name):
    return next(spec for spec in suite if spec.name == name)


def torch_sgd(twin):
    """torch.optim.SGD with our SGD's update: weight decay where ``optim.decays`` says."""
    import torch
    from ..train.optim import decays
    decay = [p for name, p in twin.params if decays(name, p)]
    rest = [p for name, p in twin.params if not decays(name, p)]
    groups = [group for group in ({"params": decay, "weight_decay": WEIGHT_DECAY},
                                  {"params": rest, "weight_decay": 0.0}) if group["params"]]
    return torch.optim.SGD(groups, lr=LR, momentum=MOMENTUM, nesterov=True)


def our_sgd(model):
    from ..train.optim import SGD
    return SGD(model, LR, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY)


# -- the float64 check of the twin ------------------------------------------------------------
def _relative(ours, theirs):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = float(np.max(np.abs(theirs), initial=0.0))
    diff = float(np.max(np.abs(ours - theirs), initial=0.0))
    return diff / scale if scale > 0 else diff


def _running_statistics(ours, theirs):
    """Largest difference of BatchNorm's running statistics: the running mean's relative to
    the running standard deviation (what eval mode divides it by: a mean that is nearly 0, a
    sum of cancelling terms, has no relative accuracy of its own), the variance's relative."""
    worst = 0.0
    for name in ours:
        if name.endswith("running_var"):
            prefix = name[:-len("running_var")]
            var = theirs[name].numpy()
            mean_diff = np.abs(ours[prefix + "running_mean"]
                               - theirs[prefix + "running_mean"].numpy())
            worst = max(worst, _relative(ours[name], theirs[name]),
                        float(np.max(mean_diff / np.sqrt(var))))
    return worst


def check_twin(spec, batch=CHECK_BATCH, backend="numpy"):
    """{what: largest relative difference} between our float64 network (on ``backend``) and
    its twin over one training step (logits, loss, gradients, parameters and running
    statistics after the SGD update) and the eval-mode logits after it. Relative: max |ours -
    torch| / max |torch| per tensor, the worst tensor. Dropout is set to p = 0 for the check
    (the two libraries draw different masks). torch runs on one thread here (its thread pool
    spins badly on a busy machine, and these are small float64 problems)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _check_twin(spec, batch, backend)
    finally:
        torch.set_num_threads(threads)


def _check_twin(spec, batch, backend):
    import torch
    import torch.nn.functional as F
    from .. import nn
    from ..train.losses import cross_entropy_backward, cross_entropy_forward
    model = spec.build(backend, np.float64)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    twin = torch_twin(model)
    x, labels = spec.inputs(batch, np.float64)
    tx, tlabels = torch.tensor(x), torch.tensor(labels.astype(np.int64))

    optimizer = our_sgd(model)   # train.loop.train_step, keeping the logits
    model.zero_grad()
    logits = model.forward(x)
    loss, cache = cross_entropy_forward(logits, labels)
    model.backward(cross_entropy_backward(1.0, cache))
    optimizer.step()
    t_optimizer = torch_sgd(twin)
    t_optimizer.zero_grad()
    t_logits = twin.module(tx)
    t_loss = F.cross_entropy(t_logits, tlabels)
    t_loss.backward()
    t_optimizer.step()

    ours = {name: (value, grad) for name, value, grad in model.named_parameters()}
    buffers = dict(model.named_buffers())
    errors = {"logits": _relative(logits, t_logits), "loss": _relative(loss, t_loss),
              "gradients": max(_relative(ours[name][1], p.grad) for name, p in twin.params),
              "parameters after the step": max(_relative(ours[name][0], p)
                                               for name, p in twin.params),
              "running statistics": _running_statistics(buffers, dict(twin.buffers))}
    model.eval()
    twin.module.eval()
    with torch.no_grad():
        errors["eval logits"] = _relative(model.forward(x), twin.module(tx))
    return errors


# -- the timed closures -----------------------------------------------------------------------
def _nothing():
    return None


def _first_call(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def our_calls(spec, backend, first_inference=None):
    """(infer, step): closures running our network on ``backend``: an eval-mode forward of one
    copy, a ``train_step`` of another (a no-op for inference-only networks). The first
    inference runs here, its seconds stored in ``first_inference`` (a list) if given."""
    from ..train.loop import train_step
    model, eval_model = spec.build(backend), spec.build(backend).eval()
    x, labels = spec.inputs()
    optimizer = our_sgd(model)

    def infer():
        eval_model.forward(x)

    def step():
        train_step(model, optimizer, x, labels)

    seconds = _first_call(infer)
    if first_inference is not None:
        first_inference.append(seconds)
    return infer, (step if spec.train else _nothing)


@contextlib.contextmanager
def _without_onednn():
    """torch.backends.mkldnn.flags(enabled=False), without its warning about TF32 on Intel
    GPUs (it restores the TF32 flag on exit)."""
    import torch
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def torch_calls(spec, onednn=True, first_inference=None):
    """(infer, step) of the PyTorch twin (built from our numpy network's parameters), with
    oneDNN on (torch's default) or off (``torch.backends.mkldnn.flags(enabled=False)``)."""
    import torch
    import torch.nn.functional as F
    twin, eval_twin = torch_twin(spec.build("numpy")), torch_twin(spec.build("numpy").eval())
    x_np, labels = spec.inputs()
    x, target = torch.from_numpy(x_np), torch.from_numpy(labels.astype(np.int64))
    optimizer = torch_sgd(twin)
    flags = contextlib.nullcontext if onednn else _without_onednn

    def infer():
        with flags(), torch.inference_mode():
            eval_twin.module(x)

    def step():
        with flags():
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(twin.module(x), target).backward()
            optimizer.step()

    seconds = _first_call(infer)
    if first_inference is not None:
        first_inference.append(seconds)
    return infer, (step if spec.train else _nothing)


def library_calls(library, first_inference=None):
    """calls(spec) -> (infer, step) for ``library``: a backend name, "torch" or "torch-nodnn"."""
    onednn = dict(TORCH_LIBRARIES).get(library)
    if onednn is None:
        return lambda spec: our_calls(spec, library, first_inference)
    return lambda spec: torch_calls(spec, onednn, first_inference)


# -- memory ----------------------------------------------------------------------------------
def traced_step_peak(spec, backend):
    """Peak bytes NumPy allocated (tracemalloc) during one training step of ours, after two."""
    return memory.traced_peak(our_calls(spec, backend)[1])


def rss_step_peak_here(spec, library):
    """(bytes, method): the rise of this process's resident set during one training step of
    ``library`` (``memory.rss_peak_here``); meant for a fresh process (``rss_step_peak``)."""
    return memory.rss_peak_here(library_calls(library)(spec)[1])


_RSS_SCRIPT = """\
import json, sys
from dynconv_np.bench import networks
torch = networks.import_torch()
if torch is not None:
    torch.set_num_threads({threads})
spec = networks.find_network(networks.{suite}, {name!r})
print(json.dumps(networks.rss_step_peak_here(spec, {library!r})))
"""


def rss_step_peak(spec, library, tiny=False):
    """``rss_step_peak_here`` in a fresh Python process (nothing else allocated or cached
    there), with glibc mapping every block >= 64 KiB on its own (MALLOC_MMAP_THRESHOLD_), so
    that freed memory leaves the resident set -> (bytes, method)."""
    code = _RSS_SCRIPT.format(threads=os.cpu_count() or 1, suite="TINY_SUITE" if tiny else "SUITE",
                              name=spec.name, library=library)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env=dict(os.environ, **MALLOC_ENV)).stdout
    peak, method = json.loads(out.strip().splitlines()[-1])
    return peak, method
