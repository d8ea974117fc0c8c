"""The paper's networks (static and DY versions) and their cost accounting.

Every model function takes ``dynamic`` (False: static ``nn.Conv2d``; True: the paper's DY network,
every convolution but the first an ``nn.DynamicConv2d``), ``num_kernels``, ``num_classes``,
``temperature``, ``backend``, ``dtype`` and ``rng``, and returns an ``nn.Sequential``.
``profile(model, input_shape)`` counts its parameters and multiply-adds.
"""
from .mobilenetv2 import mobilenet_v2
from .mobilenetv3 import mobilenet_v3_large, mobilenet_v3_small
from .profile import LayerCost, Profile, profile
from .resnet import resnet10, resnet18
