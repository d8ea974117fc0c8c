"""PyTorch weights in and out, the comparison harness, golden fixtures.

torch is optional: nothing here imports it until a function needs it (reading a .pt file,
making tensors, running a torch module), and then a missing torch is an ImportError that says
how to install it or how to do without (.npz files, dicts of NumPy arrays).

    load_state / save_state       any source (torch state dict, module, .pt/.pth, .npz) <-> arrays
    make_layer, layer_from_state, load_layer, export_layer
                                  one DynamicConv2d <-> a preset's layout ("kaijieshi7",
                                  "tardelean", "dynconv_np"; presets.PRESETS)
    load_model, export_model      whole networks: our names, torchvision's static ResNet /
                                  MobileNetV2 / MobileNetV3, networks of preset layers
    conform, static_to_dynamic    lay a DY net's attention out as a preset's; start a DY net
                                  from its static twin's weights
    compare                       a torch dynamic convolution against the reference, stage by
                                  stage and gradient by gradient, with derived tolerances
    write_fixtures, check_fixtures
                                  golden .npz fixtures for ports in other languages, and grading
"""
from .grade import check_fixtures
from .fixtures import write_fixtures
from .harness import CompareReport, compare
from .models import MODEL_PRESETS, conform, export_model, load_model, static_to_dynamic
from .presets import PRESETS, export_layer, get_preset, layer_from_state, load_layer, make_layer
from .stages import error_bounds, run_reference
from .state import load_state, save_state

__all__ = ["CompareReport", "MODEL_PRESETS", "PRESETS", "check_fixtures", "compare", "conform",
           "error_bounds", "export_layer", "export_model", "get_preset", "layer_from_state",
           "load_layer", "load_model", "load_state", "make_layer", "run_reference",
           "save_state", "static_to_dynamic", "write_fixtures"]
