"""Training-only heads: ``ProjectionHead``, the PROJ of Algorithm S2 (Zhang et al., CVPR 2023 supplement).

The paper does not give PROJ's architecture; it acts on RoI feature maps ([K, C, h, w] -> [K, D, h, w]) before
average pooling, so it must be convolutional. Our choice: 1x1 conv -> ReLU -> 1x1 conv, D = 128 by default.
The head is used only by L_OCL during training and is not part of the segmentation model at inference.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ProjectionHead"]


class ProjectionHead(nn.Module):
    """1x1 conv (in_dim -> hidden_dim), ReLU, 1x1 conv (hidden_dim -> out_dim)."""

    def __init__(self, in_dim: int = 1024, hidden_dim: int = 1024, out_dim: int = 128) -> None:
        super().__init__()
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        self.conv1 = nn.Conv2d(in_dim, hidden_dim, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(hidden_dim, out_dim, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """[K, in_dim, h, w] -> [K, out_dim, h, w]."""
        return self.conv2(self.relu(self.conv1(x)))
