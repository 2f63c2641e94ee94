"""Receptive field (RF) of a built Keras network, analytic and empirical.

Analytic: walk the layer graph, growing the RF by (k − 1)·jump at every convolution or pooling
and tracking the jump (input pixels per feature pixel) through pooling and upsampling; merges
take the largest RF of their inputs. Empirical: the support of the input gradient of the
centre output pixel of a linear, positive copy of the network (`connectivity_probe`), i.e.
which input pixels are wired to that output. For the U-Net both give 14·2^depth − 7 px.
"""

from __future__ import annotations

import numpy as np

_ELEMENTWISE_OK = ("Dropout", "SpatialDropout2D", "Activation", "ReLU", "LeakyReLU", "Softmax",
                   "BatchNormalization", "LayerNormalization", "GroupNormalization", "Rescaling",
                   "GaussianNoise", "Identity", "Lambda", "InputLayer")
_MERGES = ("Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _grow(layer, inputs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(rf size, jump) per axis after `layer`, given its inputs' (size, jump)."""
    kind = type(layer).__name__
    size = np.max([s for s, _ in inputs], axis=0)
    jump = np.max([j for _, j in inputs], axis=0)
    if kind in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
        k = np.array(_pair(layer.kernel_size))
        d = np.array(_pair(layer.dilation_rate))
        return size + (d * (k - 1)) * jump, jump * np.array(_pair(layer.strides))
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        k = np.array(_pair(layer.pool_size))
        s = np.array(_pair(layer.strides if layer.strides is not None else layer.pool_size))
        return size + (k - 1) * jump, jump * s
    if kind == "UpSampling2D":
        return size, jump / np.array(_pair(layer.size))
    if kind == "Conv2DTranspose":
        jump = jump / np.array(_pair(layer.strides))
        return size + (np.array(_pair(layer.kernel_size)) - 1) * jump, jump
    if kind in _MERGES or kind in _ELEMENTWISE_OK:
        return size, jump
    raise ValueError(f"cannot derive a receptive field through layer {layer.name!r} ({kind})")


def analytic_receptive_field(model) -> int:
    """RF in input pixels of the model's outputs (the largest over outputs and axes)."""
    state = {id(t): (np.ones(2), np.ones(2)) for t in model.inputs}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            ins = list(node.input_tensors)
            if not ins or any(id(t) not in state for t in ins):
                continue
            grown = _grow(layer, [state[id(t)] for t in ins])
            for t in node.output_tensors:
                state[id(t)] = grown
    return int(round(max(float(np.max(state[id(t)][0])) for t in model.outputs)))


def connectivity_probe(model, seed: int = 0):
    """A copy of `model` in which every input pixel that CAN reach an output still does.

    The receptive field is a property of the architecture, not of the trained weights: on a
    trained U-Net, random probe inputs drove the logits to ±700, the softmax saturated to exactly
    0/1 and every input gradient came out zero (the demo's `og`; 6 of 10 C. elegans trainings), or
    only part of the field survived (dead ReLUs). The probe keeps the layers and their geometry
    (kernel sizes, strides, dilation, padding, pooling, upsampling, merges) but makes the network
    linear and positive: kernels drawn from [0.5, 1.5] / fan-in, zero biases, identity activations,
    max pooling replaced by average pooling over the same window (max pooling can route its
    gradient through any pixel of the window). Every path then carries a positive gradient, so
    the gradient support is exactly the set of input pixels wired to the output.
    """
    import keras

    def clone(layer):
        kind, cfg = type(layer).__name__, layer.get_config()
        if kind == "MaxPooling2D":
            return keras.layers.AveragePooling2D(pool_size=cfg["pool_size"], strides=cfg["strides"],
                                                 padding=cfg["padding"], name=layer.name)
        if kind in ("Activation", "ReLU", "LeakyReLU", "Softmax", "ELU", "PReLU"):
            return keras.layers.Identity(name=layer.name)
        if "activation" in cfg:
            cfg["activation"] = "linear"
        return type(layer).from_config(cfg)

    # the same graph, uncompiled: cloning a compiled model would rebuild its losses (StarDist's are
    # custom functions Keras cannot find by name)
    graph = keras.Model(model.inputs, model.outputs)
    probe = keras.models.clone_model(graph, clone_function=clone)
    rng = np.random.default_rng(seed)
    for layer in probe.layers:
        for w in layer.weights:
            leaf = w.path.rsplit("/", 1)[-1]
            shape = tuple(int(n) for n in w.shape)
            if leaf in ("kernel", "depthwise_kernel", "pointwise_kernel"):
                fan_in = int(np.prod(shape[:-1])) if leaf != "depthwise_kernel" else int(np.prod(shape[:2]))
                w.assign(rng.uniform(0.5, 1.5, size=shape).astype(np.float32) / max(fan_in, 1))
            elif leaf in ("gamma", "moving_variance"):
                w.assign(np.ones(shape, np.float32))
            else:  # biases, beta, moving_mean
                w.assign(np.zeros(shape, np.float32))
    return probe


def _support(probe, size: int, phase: int) -> tuple[list[int], list[int], bool]:
    """y and x offsets of the input-gradient support of output pixel (c + phase, c + phase)."""
    import tensorflow as tf

    n_in = int(probe.inputs[0].shape[-1])
    x = tf.ones((1, size, size, n_in), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outs = probe(x, training=False)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        total = 0.0
        for out in outs:
            h = int(out.shape[1])
            c = h // 2 + phase
            total += tf.reduce_sum(out[:, c, c, :])
    grad = tape.gradient(total, x).numpy().sum(axis=(0, 3))
    centre = c * (size // h)
    rows, cols = np.nonzero((grad > 0).any(axis=1))[0], np.nonzero((grad > 0).any(axis=0))[0]
    if rows.size == 0:
        raise ValueError("no input pixel is wired to the output (the network has no path from input to output)")
    touches = bool(rows[0] == 0 or cols[0] == 0 or rows[-1] == size - 1 or cols[-1] == size - 1)
    return ([int(rows[0] - centre), int(rows[-1] - centre)],
            [int(cols[0] - centre), int(cols[-1] - centre)], touches)


def empirical_receptive_field(model, phases: int = 1, divisor: int = 1, seed: int = 0, start: int = 64,
                              max_size: int = 2048) -> dict:
    """Measured RF: gradient support of the centre output pixel of the connectivity probe
    (`connectivity_probe`), at each pooling phase.

    Where an output pixel sits against the pooling grid (its phase, 0 .. phases−1 with
    phases = 2^depth) changes its field: nearest upsampling followed by a 2x2 convolution
    reaches one coarse pixel further on odd phases. The mean width over the phases is what
    layer arithmetic predicts (`empirical_px`); the widest is the true RF (`empirical_max_px`).
    The probe image doubles until every support stays clear of its border. Independent of the
    trained weights, so it gives the same answer before and after training.
    """
    probe = connectivity_probe(model, seed)
    size = -(-max(start, divisor, 4 * phases) // divisor) * divisor
    while True:
        found = [_support(probe, size, p) for p in range(phases)]
        clipped = any(t for _, _, t in found)
        if clipped and size * 2 <= max_size:
            size *= 2
            continue
        widths = [max(ey[1] - ey[0], ex[1] - ex[0]) + 1 for ey, ex, _ in found]
        return {"empirical_px": float(np.mean(widths)), "empirical_max_px": int(max(widths)),
                "empirical_min_px": int(min(widths)),
                "empirical_extent_px": [{"phase": p, "y": ey, "x": ex} for p, (ey, ex, _) in enumerate(found)],
                "empirical_method": "input-gradient support of the centre output pixel of a linear, positive copy "
                                    f"of the network (same layers; wiring, not trained weights), {phases} phase(s)",
                "probe_size_px": size, "empirical_clipped": clipped}
