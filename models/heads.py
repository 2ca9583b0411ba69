"""One ASPP branch (DeepLab-v2 "ASPP-L") of a task head (SPEC §3.1)."""
import torch
from torch import nn


class ClassificationModule(nn.Module):
    """Dilated 3x3 conv -> ReLU -> Dropout -> 1x1 -> ReLU -> Dropout -> 1x1 to the task's channels.

    Keeps PyTorch's default conv init. `hidden_channels` is 1024 in the original; smaller values
    make CPU-sized models.
    """

    def __init__(self, inplanes: int, num_classes: int, rate: int, hidden_channels: int = 1024) -> None:
        super().__init__()
        if num_classes < 1 or hidden_channels < 1 or rate < 1:
            raise ValueError(f"ClassificationModule: num_classes ({num_classes}), hidden_channels "
                             f"({hidden_channels}) and rate ({rate}) must be positive")
        self.conv1 = nn.Conv2d(inplanes, hidden_channels, kernel_size=3, stride=1, padding=rate,
                               dilation=rate, bias=True)
        self.conv2 = nn.Conv2d(hidden_channels, hidden_channels, kernel_size=1)
        self.conv3 = nn.Conv2d(hidden_channels, num_classes, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(p=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.relu(self.conv1(x)))
        out = self.dropout(self.relu(self.conv2(out)))
        return self.conv3(out)
