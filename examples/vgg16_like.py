"""A VGG-16-shaped network for ``maxswitch audit``, written out because torchvision does not install here.

The layers, widths and initialisation of torchvision's ``vgg16()`` (configuration D: thirteen 3x3
convolutions in five blocks, each block ending in a 2x2 stride-2 max pooling, then the 7x7 adaptive
average pool and the classifier), so ``--random SEED`` gives weights drawn as an untrained
torchvision VGG-16's are, and a torchvision state dict (``vgg16-397923af.pth`` saved with
``torch.save(model.state_dict())``) loads with ``--weights``::

    maxswitch audit examples/vgg16_like.py:vgg16_like DATA_DIR --random 0 --normalize imagenet
"""

from torch import nn

CONFIG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    def __init__(self, config=CONFIG_D, num_classes: int = 1000):
        super().__init__()
        layers, cin = [], 3
        for v in config:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def vgg16_like() -> VGG:
    """VGG-16 (configuration D), untrained."""
    return VGG()
