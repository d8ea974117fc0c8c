"""Small PyTorch modules for the interop tests, written here from the published layouts.

* ``KaijieLayout``: a dynamic convolution with the kaijieshi7 ``Dynamic_conv2d`` state layout
  (weight, bias, attention.fc1 a bias-free 1x1 conv, attention.fc2 a 1x1 conv; hidden =
  int(in * ratio) + 1, or K for 3 input channels; temperature an attribute, 34 by default);
* ``TardeleanLayout``: the tardelean ``DynamicConvolution`` layout (kernels_weights,
  kernels_bias, attention.to_scores = Linear, ReLU, Linear; hidden = max(1, in // reduce);
  temperature a forward argument);
* planted bugs, each a subclass that gets one thing wrong;
* torchvision-named static networks (``TVResNet``, ``TVMobileNetV2``, ``TVMobileNetV3``) with
  the key names of torchvision's state dicts, for the static model import.

These are our own minimal modules (not copies of those projects' code): the per-sample
convolution is done in two different ways (a grouped conv over the batch, and a loop over
samples) so that the harness's kernel capture is exercised both ways.
"""
import torch
import torch.nn.functional as F
from torch import nn

from dynconv_np.models.mobilenetv2 import INVERTED_RESIDUAL_SETTING
from dynconv_np.models.mobilenetv3 import LARGE_SETTING, SMALL_SETTING
from dynconv_np.nn import make_divisible


class _KaijieAttention(nn.Module):
    def __init__(self, in_planes, ratio, num_kernels, temperature):
        super().__init__()
        hidden = num_kernels if in_planes == 3 else int(in_planes * ratio) + 1
        self.fc1 = nn.Conv2d(in_planes, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, num_kernels, 1, bias=True)
        self.temperature = temperature

    def pool(self, x):
        return F.adaptive_avg_pool2d(x, 1)

    def scores(self, x):
        return self.fc2(F.relu(self.fc1(self.pool(x)))).flatten(1)

    def forward(self, x):
        return torch.softmax(self.scores(x) / self.temperature, dim=1)


class KaijieLayout(nn.Module):
    """kaijieshi7-layout dynamic convolution (square kernel); per-sample conv as one grouped
    conv over the whole batch."""

    def __init__(self, in_planes, out_planes, kernel_size, ratio=0.25, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, K=4, temperature=34):
        super().__init__()
        self.in_planes, self.out_planes, self.groups = in_planes, out_planes, groups
        self.kernel_size, self.stride, self.padding, self.dilation = (kernel_size, stride,
                                                                      padding, dilation)
        self.K = K
        self.attention = self._attention(in_planes, ratio, K, temperature)
        self.weight = nn.Parameter(torch.randn(K, out_planes, in_planes // groups, kernel_size,
                                               kernel_size) * (in_planes // groups) ** -0.5 / 3)
        self.bias = nn.Parameter(torch.randn(K, out_planes) * 0.1) if bias else None

    def _attention(self, in_planes, ratio, K, temperature):
        return _KaijieAttention(in_planes, ratio, K, temperature)

    def aggregate(self, pi):
        w = (pi @ self.weight.reshape(self.K, -1)).reshape(-1, *self.weight.shape[2:])
        b = None if self.bias is None else (pi @ self.bias).reshape(-1)
        return w, b

    def forward(self, x):
        pi = self.attention(x)
        n, _, h, w_ = x.shape
        weight, bias = self.aggregate(pi)
        y = F.conv2d(x.reshape(1, -1, h, w_), weight, bias, self.stride, self.padding,
                     self.dilation, self.groups * n)
        return y.reshape(n, self.out_planes, *y.shape[-2:])


class _TardeleanAttention(nn.Module):
    def __init__(self, channels, hidden, num_kernels):
        super().__init__()
        self.to_scores = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True),
                                       nn.Linear(hidden, num_kernels))
        with torch.no_grad():   # live ReLUs and spread-out scores: every gradient non-zero
            self.to_scores[0].bias.uniform_(0.1, 0.5)
            self.to_scores[0].weight.mul_(4)
            self.to_scores[2].weight.mul_(4)

    def forward(self, x, temperature=1):
        return F.softmax(self.to_scores(x.mean(dim=(2, 3))) / temperature, dim=-1)


class TardeleanLayout(nn.Module):
    """tardelean-layout dynamic convolution; per-sample conv as a loop over samples."""

    def __init__(self, nof_kernels, reduce, in_channels, out_channels, kernel_size, stride=1,
                 padding=0, dilation=1, groups=1, bias=True):
        super().__init__()
        self.groups = groups
        self.conv_args = {"stride": stride, "padding": padding, "dilation": dilation}
        self.attention = _TardeleanAttention(in_channels, max(1, in_channels // reduce),
                                             nof_kernels)
        kernel = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.kernels_weights = nn.Parameter(
            torch.randn(nof_kernels, out_channels, in_channels // groups, *kernel) / 3)
        self.kernels_bias = (nn.Parameter(torch.randn(nof_kernels, out_channels) * 0.1)
                             if bias else None)

    def forward(self, x, temperature=1):
        alphas = self.attention(x, temperature)
        w = torch.einsum("nk,koihw->noihw", alphas, self.kernels_weights)
        b = None if self.kernels_bias is None else alphas @ self.kernels_bias
        return torch.cat([F.conv2d(x[i:i + 1], w[i], None if b is None else b[i],
                                   groups=self.groups, **self.conv_args)
                          for i in range(x.shape[0])])


# ---- planted bugs ----------------------------------------------------------------------------
class _NoTemperatureAttention(_KaijieAttention):
    def forward(self, x):
        return torch.softmax(self.scores(x), dim=1)           # BUG: tau forgotten


class KaijieNoTemperature(KaijieLayout):
    def _attention(self, in_planes, ratio, K, temperature):
        return _NoTemperatureAttention(in_planes, ratio, K, temperature)


class _MaxPoolAttention(_KaijieAttention):
    def pool(self, x):
        return F.adaptive_max_pool2d(x, 1)                    # BUG: max instead of mean


class KaijieMaxPool(KaijieLayout):
    def _attention(self, in_planes, ratio, K, temperature):
        return _MaxPoolAttention(in_planes, ratio, K, temperature)


class _BatchSoftmaxAttention(_KaijieAttention):
    def forward(self, x):
        return torch.softmax(self.scores(x) / self.temperature, dim=0)   # BUG: over the batch


class KaijieBatchSoftmax(KaijieLayout):
    def _attention(self, in_planes, ratio, K, temperature):
        return _BatchSoftmaxAttention(in_planes, ratio, K, temperature)


class KaijieDetachedAttention(KaijieLayout):
    def forward(self, x):
        pi = self.attention(x.detach())                         # BUG: no gradient into x
        n, _, h, w_ = x.shape                                   # through the attention
        weight, bias = self.aggregate(pi)
        y = F.conv2d(x.reshape(1, -1, h, w_), weight, bias, self.stride, self.padding,
                     self.dilation, self.groups * n)
        return y.reshape(n, self.out_planes, *y.shape[-2:])


class TardeleanBiasMixup(TardeleanLayout):
    def forward(self, x, temperature=1):
        alphas = self.attention(x, temperature)
        w = torch.einsum("nk,koihw->noihw", alphas, self.kernels_weights)
        b = alphas.flip(0) @ self.kernels_bias                  # BUG: another sample's pi
        return torch.cat([F.conv2d(x[i:i + 1], w[i], b[i], groups=self.groups,
                                   **self.conv_args) for i in range(x.shape[0])])


# ---- torchvision-named static networks --------------------------------------------------------
class ConvBN(nn.Sequential):
    """torchvision's Conv2dNormActivation: children 0 (conv), 1 (bn), 2 (activation)."""

    def __init__(self, cin, cout, k, stride=1, groups=1, activation=nn.ReLU6, eps=1e-5,
                 momentum=0.1):
        layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout, eps=eps, momentum=momentum)]
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class TVResNet(nn.Module):
    """torchvision ResNet names: conv1, bn1, layerS.B.{conv1,bn1,conv2,bn2,downsample.0/1}, fc."""

    def __init__(self, blocks=(1, 1, 1, 1), num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for stage, (cout, repeats) in enumerate(zip((64, 128, 256, 512), blocks)):
            layers = []
            for index in range(repeats):
                layers.append(BasicBlock(cin, cout, 2 if stage and not index else 1))
                cin = cout
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layers))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(x.mean(dim=(2, 3)))


class InvertedResidualV2(nn.Module):
    def __init__(self, cin, cout, stride, expansion):
        super().__init__()
        hidden = int(round(cin * expansion))
        layers = [ConvBN(cin, hidden, 1)] if expansion != 1 else []
        layers += [ConvBN(hidden, hidden, 3, stride, hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class TVMobileNetV2(nn.Module):
    """torchvision MobileNetV2 names: features.0.{0,1}, features.i.conv.*, features.18.{0,1},
    classifier.1."""

    def __init__(self, width=1.0, num_classes=10):
        super().__init__()
        cin = make_divisible(32 * width)
        last = make_divisible(1280 * max(1.0, width))
        features = [ConvBN(3, cin, 3, 2)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            cout = make_divisible(c * width)
            for i in range(n):
                features.append(InvertedResidualV2(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvBN(cin, last, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class SqueezeExcitation(nn.Module):
    def __init__(self, channels, squeeze):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class InvertedResidualV3(nn.Module):
    def __init__(self, cin, k, expanded, cout, use_se, act, stride):
        super().__init__()
        activation = nn.Hardswish if act == "HS" else nn.ReLU
        bn = {"eps": 1e-3, "momentum": 0.01}
        layers = [ConvBN(cin, expanded, 1, activation=activation, **bn)] \
            if expanded != cin else []
        layers.append(ConvBN(expanded, expanded, k, stride, expanded, activation, **bn))
        if use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4, 8)))
        layers.append(ConvBN(expanded, cout, 1, activation=None, **bn))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class TVMobileNetV3(nn.Module):
    """torchvision MobileNetV3 names: features.0.{0,1}, features.i.block.j.{0,1,fc1,fc2},
    features.L.{0,1}, classifier.0, classifier.3."""

    def __init__(self, small=True, num_classes=10):
        super().__init__()
        setting, last = (SMALL_SETTING, 1024) if small else (LARGE_SETTING, 1280)
        bn = {"eps": 1e-3, "momentum": 0.01}
        features = [ConvBN(3, setting[0][0], 3, 2, activation=nn.Hardswish, **bn)]
        features += [InvertedResidualV3(*row) for row in setting]
        final = setting[-1][3]
        features.append(ConvBN(final, 6 * final, 1, activation=nn.Hardswish, **bn))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Linear(6 * final, last), nn.Hardswish(),
                                        nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def randomize_batchnorm(module, seed=0):
    """Non-trivial BatchNorm statistics and affine parameters (the defaults hide mix-ups)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = 1 + 0.2 * torch.randn(n, generator=g)
            m.bias.data = 0.1 * torch.randn(n, generator=g)
            m.running_mean.data = 0.1 * torch.randn(n, generator=g)
            m.running_var.data = 1 + 0.2 * torch.rand(n, generator=g)
    return module
