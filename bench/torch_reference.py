"""A PyTorch twin of `serjax.model.SERCNN`, its loss and optimizer: the benchmark's reference.

PyTorch is a benchmark dependency only (`pip install torch`); serjax never imports this file.

    python bench/torch_reference.py [--widths 1 2 4]   # parameter counts: torch vs serjax

The mathematics is serjax's:
- 6 × [Conv 3×3, stride 1, padding 1, with bias → BatchNorm2d (momentum 0.1, ε 1e-5) → ReLU];
- ECA after blocks 5 and 6 (k = 7): y = x · sigmoid(conv1d_k(GAP_hw(x))), the 1-D convolution
  over the channel axis with zero padding and no bias;
- AvgPool2d(2) (floor) after blocks 1-5, global average pool after block 6;
- Linear(C6, C6) → ReLU → Linear(C6, classes);
- weighted focal loss −w_y (1 − p_y)^γ log p_y (mean over the batch), Adam.
Input is [B, mels, frames] like serjax's; it becomes [B, 1, mels, frames] in channels_last.

One difference that does not touch speed or the training forward pass: BatchNorm's running
variance is updated with the unbiased batch variance in PyTorch and the biased one in Flax,
so the eval-mode outputs of the two drift apart slightly as training goes on.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

BASE_WIDTHS = (8, 16, 32, 32, 64, 64)


class ECA(nn.Module):
    def __init__(self, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x):  # x: [B, C, H, W]
        pooled = x.mean(dim=(2, 3))  # [B, C]
        weights = torch.sigmoid(self.conv(pooled[:, None, :])[:, 0, :])
        return x * weights[:, :, None, None]


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=1, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class TorchSERCNN(nn.Module):
    def __init__(
        self,
        num_classes: int = 4,
        widths: Sequence[int] = BASE_WIDTHS,
        eca_layers: Sequence[int] = (5, 6),
        eca_kernels: Sequence[int] = (7, 7),
    ):
        super().__init__()
        self.widths = tuple(widths)
        cins = (1,) + self.widths[:-1]
        self.blocks = nn.ModuleList(ConvBlock(ci, co) for ci, co in zip(cins, self.widths))
        kernels = dict(zip(eca_layers, eca_kernels))
        # ECA modules keyed by block number (1-based), as in serjax's eca5 / eca6
        self.eca = nn.ModuleDict({str(b): ECA(k) for b, k in kernels.items()})
        self.dense1 = nn.Linear(self.widths[-1], self.widths[-1])
        self.dense2 = nn.Linear(self.widths[-1], num_classes)
        for m in self.modules():  # He normal, fan-in, untruncated (as serjax)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv1d):
                nn.init.normal_(m.weight, std=float(np.sqrt(2.0 / m.weight.shape[-1])))

    def forward(self, x):  # x: [B, mels, frames]
        x = x[:, None].contiguous(memory_format=torch.channels_last)
        last = len(self.blocks)
        for b, block in enumerate(self.blocks, start=1):
            x = block(x)
            if str(b) in self.eca:
                x = self.eca[str(b)](x)
            if b < last:
                x = F.avg_pool2d(x, 2)
        x = x.mean(dim=(2, 3))
        return self.dense2(F.relu(self.dense1(x)))


def focal_loss(logits, labels, weights, gamma: float):
    """Per-sample −w_y · (1 − p_y)^γ · log p_y (serjax.losses.focal_loss)."""
    log_p = F.log_softmax(logits, dim=-1).gather(1, labels[:, None])[:, 0]
    modulation = (1.0 - log_p.exp()) ** gamma if gamma else 1.0
    return -weights[labels] * modulation * log_p


def param_count(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers, as in Flax's batch_stats)."""
    return int(sum(p.numel() for p in model.parameters()))


def build(
    width_scale: int, num_classes: int = 4, lr: float = 1e-3, seed: int = 0, device: str = "cpu"
):
    """(model in channels_last on `device`, Adam) for widths n × (8, 16, 32, 32, 64, 64)."""
    torch.manual_seed(seed)
    model = TorchSERCNN(num_classes, tuple(width_scale * b for b in BASE_WIDTHS))
    model = model.to(device=device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    return model, opt


def normalise(table, rows, mean, std):
    """serjax.data.FoldData.inputs: gather float16 rows, to float32, per-Mel-band standardise."""
    x = table[rows].float()
    return (x - mean[:, None]) / std[:, None]


def train_step(model, opt, rows, table, labels, weights, mean, std, gamma: float = 2.0):
    """One step of serjax's train step in PyTorch; returns (loss, correct) tensors (no sync)."""
    model.train()
    x = normalise(table, rows, mean, std)
    y = labels[rows % labels.shape[0]]
    logits = model(x)
    loss = focal_loss(logits, y, weights, gamma).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), (logits.detach().argmax(-1) == y).sum()


@torch.inference_mode()
def eval_step(model, rows, table, mean, std):
    model.eval()
    return model(normalise(table, rows, mean, std))


def load_flax_variables(model: TorchSERCNN, variables, dtype=np.float32) -> None:
    """Copy serjax's (Flax) params and batch_stats into the torch model, in place.

    Conv kernels HWIO → OIHW, Dense kernels [in, out] → [out, in], ECA kernel [k] → [1, 1, k].
    """
    params = variables["params"]
    stats = variables.get("batch_stats", {})

    def t(a):
        return torch.from_numpy(np.array(a, dtype=dtype))

    with torch.no_grad():
        for b, block in enumerate(model.blocks, start=1):
            p = params[f"block{b}"]
            block.conv.weight.copy_(t(p["Conv_0"]["kernel"]).permute(3, 2, 0, 1))
            block.conv.bias.copy_(t(p["Conv_0"]["bias"]))
            block.bn.weight.copy_(t(p["BatchNorm_0"]["scale"]))
            block.bn.bias.copy_(t(p["BatchNorm_0"]["bias"]))
            if f"block{b}" in stats:
                block.bn.running_mean.copy_(t(stats[f"block{b}"]["BatchNorm_0"]["mean"]))
                block.bn.running_var.copy_(t(stats[f"block{b}"]["BatchNorm_0"]["var"]))
        for b, eca in model.eca.items():
            eca.conv.weight.copy_(t(params[f"eca{b}"]["kernel"]).reshape(1, 1, -1))
        for name in ("dense1", "dense2"):
            layer = getattr(model, name)
            layer.weight.copy_(t(params[name]["kernel"]).T)
            layer.bias.copy_(t(params[name]["bias"]))


def serjax_param_count(width_scale: int, num_classes: int = 4, input_shape=(64, 601)) -> int:
    """Parameter count of serjax's model for the same n (base config; shapes only, no compute)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import jax
    import jax.numpy as jnp

    from serjax.configlib import base_config
    from serjax.model import build_model, count_params

    cfg = base_config()
    cfg.model.width_scale = width_scale
    model = build_model(cfg.model, num_classes)
    variables = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *input_shape), jnp.float32))
    )
    return count_params(variables["params"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="parameter counts of the torch reference and serjax"
    )
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args(argv)
    ok = True
    for n in args.widths:
        ours, theirs = param_count(build(n)[0]), serjax_param_count(n)
        ok &= ours == theirs
        print(
            f"n = {n}: torch {ours:,} parameters, serjax {theirs:,} -> "
            f"{'equal' if ours == theirs else 'DIFFERENT'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
