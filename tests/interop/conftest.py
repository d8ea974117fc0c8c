"""PyTorch on one thread in these tests: the suite shares two cores, and torch's intra-op
threads, oversubscribed, make a small float64 convolution ~50x slower."""
import importlib.util

if importlib.util.find_spec("torch") is not None:
    import torch

    torch.set_num_threads(1)
