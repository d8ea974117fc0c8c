"""PyTorch, imported only when a function needs it (the core of dynconv_np never imports it)."""
import sys

TORCH_PIN = "torch==2.13.0"


def require_torch(what="this function"):
    """The ``torch`` module, or ImportError saying what needed it and how to do without."""
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"{what} needs PyTorch, which is not installed. Install it (pip install "
            f"{TORCH_PIN}, or pip install 'dynconv_np[interop]'), or, without PyTorch, pass "
            "a dict of NumPy arrays or an .npz file (save one where torch is available with "
            "np.savez(path, **{k: v.numpy() for k, v in state_dict.items()}))") from None
    return torch


def torch_loaded():
    """True when torch has been imported by someone (we never import it just to ask)."""
    return sys.modules.get("torch") is not None


def is_tensor(value):
    return torch_loaded() and isinstance(value, sys.modules["torch"].Tensor)


def is_torch_module(value):
    return torch_loaded() and isinstance(value, sys.modules["torch"].nn.Module)


def to_numpy(value):
    """A tensor (any device; bfloat16 widened to float32) or array-like -> a NumPy array copy."""
    if is_tensor(value):
        torch = sys.modules["torch"]
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        return value.numpy().copy()
    import numpy as np
    return np.array(value)


def to_tensors(state):
    """{name: array} -> {name: torch tensor} (copies)."""
    torch = require_torch("converting a state dict to tensors")
    import numpy as np
    return {name: torch.from_numpy(np.array(value)) for name, value in state.items()}
