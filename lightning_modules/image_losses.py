"""Image losses of the renderer: SSIM, an optional VGG perceptual term (user-given weights only) and hinge GAN."""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure
from torchvision.models.vgg import cfgs, make_layers

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Feature layers compared by the perceptual loss: the ReLUs ending each of the first four blocks.
VGG_LAYERS = {"vgg16": (3, 8, 15, 22), "vgg19": (3, 8, 17, 26)}
VGG_CONFIGS = {"vgg16": "D", "vgg19": "E"}  # torchvision's names of the two architectures


class PerceptualWeightsError(ValueError):
    """A VGG weights file that is missing or does not fit; the message is one sentence naming it."""


def ssim_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM`` of images ``[B, C, H, W]`` in [0, 1] (Gaussian window 11, sigma 1.5), differentiable."""
    return 1.0 - structural_similarity_index_measure(prediction.float(), target.float(), data_range=1.0)


class PerceptualLoss(nn.Module):
    """Mean L1 distance between VGG features of two images in [0, 1], over four ReLU layers (frozen VGG).

    The VGG is torchvision's architecture (its ``features`` up to the last compared layer, built untrained as
    ``weights=None`` does, without the 120M-parameter classifier) loaded from ``weights``, a file the user
    provides (a torchvision ``vgg16``/``vgg19`` state dict, whole or its ``features`` part): nothing is downloaded.
    """

    def __init__(self, weights: str | Path, network: str = "vgg19"):
        super().__init__()
        path = Path(weights)
        if network not in VGG_CONFIGS:
            raise PerceptualWeightsError(f"Perceptual network {network!r} is not one of {', '.join(VGG_CONFIGS)}.")
        if not path.is_file():
            raise PerceptualWeightsError(
                f"VGG weights file {path} does not exist: the perceptual loss needs a torchvision {network} state "
                "dict there (or leave model.perceptual_weights unset to train without it)."
            )
        layers = VGG_LAYERS[network]
        features = make_layers(cfgs[VGG_CONFIGS[network]])[: layers[-1] + 1]  # untrained, as weights=None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = {name.removeprefix("features."): value for name, value in state.items()}
            features.load_state_dict({name: state[name] for name in features.state_dict()})
        except Exception as error:  # unreadable file, wrong keys or shapes: all mean "not these weights"
            raise PerceptualWeightsError(
                f"VGG weights file {path} is not a torchvision {network} state dict ({type(error).__name__})."
            ) from error
        self.features = features.eval().requires_grad_(False)
        self.layers = set(layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        """The VGG stays in eval mode."""
        return super().train(False)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = (torch.cat([prediction, target]) - self.mean) / self.std
        loss = x.new_zeros(())
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.layers:
                predicted, wanted = x.chunk(2)
                loss = loss + F.l1_loss(predicted, wanted)
        return loss / len(self.layers)


def hinge_discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of a discriminator on patch scores of real and generated images."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the generator: raise the discriminator's scores of its images."""
    return -fake.mean()
