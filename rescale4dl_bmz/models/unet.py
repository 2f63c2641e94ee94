"""The ZeroCostDL4Mic-style multilabel 2D U-Net (Keras 3).

Per level two 3x3 same-padded ReLU convolutions with base·2^k filters and 2x2 max-pooling;
dropout 0.5 on the levels that hold 512/1024 filters at base 64 (levels >= 3). Decoder:
upsample x2 -> 2x2 conv -> concatenate the skip -> two 3x3 convs; the last decoder stage is
linear. Then a linear 3x3 conv to n_labels and a 1x1 softmax. Input (None, None, 1) float32
(normalised), output the softmax (None, None, n_labels).
"""

from __future__ import annotations

from rescale4dl_bmz.models import require_tensorflow_backend


def analytic_unet_rf(depth: int) -> int:
    """Receptive field of this U-Net in px: 14·2^depth − 7 (21/49/105/217 for depth 1–4)."""
    return 14 * 2 ** depth - 7


def build_unet(depth: int = 2, base_filters: int = 64, n_labels: int = 3, dropout: float = 0.5,
               dropout_from_level: int = 3, input_channels: int = 1, name: str = "unet"):
    """A compiled-free Keras model; sides of the input must be multiples of 2^depth."""
    keras = require_tensorflow_backend()
    from keras import layers

    def conv(filters, size, relu=True, label=None):
        return layers.Conv2D(filters, size, padding="same", activation="relu" if relu else None,
                             kernel_initializer="he_normal", name=label)

    def filters(level):
        return base_filters * 2 ** level

    inputs = keras.Input((None, None, input_channels), dtype="float32", name="input")
    x = inputs
    skips = []
    for level in range(depth + 1):  # encoder levels, then the bottom (level == depth)
        x = conv(filters(level), 3, label=f"enc{level}_conv1")(x)
        x = conv(filters(level), 3, label=f"enc{level}_conv2")(x)
        if dropout > 0 and level >= dropout_from_level:
            x = layers.Dropout(dropout, name=f"enc{level}_dropout")(x)
        if level < depth:
            skips.append(x)
            x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    for level in reversed(range(depth)):
        relu = level > 0  # the last decoder stage is linear
        x = layers.UpSampling2D(2, name=f"dec{level}_upsample")(x)
        x = conv(filters(level), 2, relu, label=f"dec{level}_upconv")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([skips[level], x])
        x = conv(filters(level), 3, relu, label=f"dec{level}_conv1")(x)
        x = conv(filters(level), 3, relu, label=f"dec{level}_conv2")(x)
    x = conv(n_labels, 3, relu=False, label="logits_conv")(x)
    outputs = layers.Conv2D(n_labels, 1, activation="softmax", name="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def build_from_config(arch) -> object:
    """A U-Net from a `UNetArch`."""
    return build_unet(depth=arch.depth, base_filters=arch.base_filters, n_labels=arch.n_labels,
                      dropout=arch.dropout, dropout_from_level=arch.dropout_from_level)
