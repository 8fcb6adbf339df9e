import shutil
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from ml.bank import mix_weights
from stylize.backends import (
    PermanentBackendError,
    TransientBackendError,
    get_backend,
)
from stylize.backends.local import LocalBackend
from stylize.backends.tfserving import TFServingBackend
from tests.model_fixtures import export_tiny_model
from tests.tfserving_server import start_tfserving_server

#: The one style of the tiny model ("tiny": the identity and slot 1), for one image.
LONE = mix_weights(2, 1)[None]


def lone(images):
    """The tiny model's style weights for each image of ``images``."""
    return np.repeat(LONE, len(images), axis=0)


def photos(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def local_backend(tiny_serving_dir):
    return LocalBackend(serving_dir=tiny_serving_dir)


@pytest.fixture
def tfserving_backend(tfserving_server):
    backend = TFServingBackend(address=tfserving_server, timeout=10)
    yield backend
    backend.close()


@pytest.fixture
def fresh_get_backend():
    get_backend.cache_clear()
    yield get_backend
    get_backend.cache_clear()


@pytest.fixture
def two_version_serving_dir(tiny_serving_dir, tmp_path):
    """models/tiny/1 (seed 0) and models/tiny/2 (seed 1)."""
    shutil.copytree(tiny_serving_dir / "models", tmp_path / "models")
    assert export_tiny_model(tmp_path / "models", seed=1)[0] == 2
    return tmp_path


# --------------------------------------------------------------------------- both backends


@pytest.mark.parametrize("shape", [(1, 37, 53, 3), (2, 32, 48, 3)], ids=["37x53", "batch-of-2"])
def test_both_backends_give_identical_pixels(local_backend, tfserving_backend, shape):
    images = photos(shape)
    local = local_backend.stylize(model_name="tiny", version=1, images=images,
                                  style_weights=lone(images))
    served = tfserving_backend.stylize(model_name="tiny", version=1, images=images,
                                       style_weights=lone(images))
    assert local.dtype == served.dtype == np.uint8
    assert local.shape == served.shape == shape
    np.testing.assert_array_equal(local, served)
    assert not np.array_equal(local, images)


def test_both_backends_paint_a_bank_with_its_style_weights(local_backend, tfserving_backend):
    images = photos((2, 24, 40, 3), seed=3)
    one_hot = np.array([[0, 1, 0], [0, 0, 1]], "float32")
    mixed = np.array([[0, 0.5, 0.5], [0, 0.5, 0.5]], "float32")
    results = {}
    for name, weights in (("one_hot", one_hot), ("mixed", mixed)):
        local = local_backend.stylize(model_name="tinybank", version=1, images=images,
                                      style_weights=weights)
        served = tfserving_backend.stylize(model_name="tinybank", version=1, images=images,
                                           style_weights=weights)
        assert local.dtype == np.uint8 and local.shape == images.shape
        np.testing.assert_array_equal(local, served)
        results[name] = local
    # Image 0 in slot 1 and image 1 in slot 2 differ from both in the 50/50 mix.
    assert np.abs(results["one_hot"].astype(int) - results["mixed"]).mean() > 1
    swapped = local_backend.stylize(model_name="tinybank", version=1, images=images,
                                    style_weights=one_hot[::-1])
    assert not np.array_equal(swapped, results["one_hot"])


@pytest.mark.parametrize("backend_fixture", ["local_backend", "tfserving_backend"])
def test_no_or_wrong_style_weights_are_permanent(request, backend_fixture):
    backend = request.getfixturevalue(backend_fixture)
    images = photos((1, 16, 16, 3))
    with pytest.raises(PermanentBackendError, match="missing"):
        backend.stylize(model_name="tinybank", version=1, images=images, style_weights=None)
    with pytest.raises(PermanentBackendError):  # the bank has 3 slots
        backend.stylize(model_name="tinybank", version=1, images=images,
                        style_weights=np.ones((1, 4), "float32") / 4)
    with pytest.raises(PermanentBackendError, match="one row"):
        backend.stylize(model_name="tinybank", version=1, images=images,
                        style_weights=np.ones((2, 3), "float32") / 3)
    with pytest.raises(PermanentBackendError, match="finite"):
        backend.stylize(model_name="tinybank", version=1, images=images,
                        style_weights=np.full((1, 3), np.nan, "float32"))
    with pytest.raises(PermanentBackendError):  # a lone style's network has 2 slots
        backend.stylize(model_name="tiny", version=1, images=images,
                        style_weights=np.ones((1, 3), "float32") / 3)


@pytest.mark.parametrize("model_name, version", [("tiny", 99), ("no-such-model", 1)])
@pytest.mark.parametrize("backend_fixture", ["local_backend", "tfserving_backend"])
def test_unknown_model_or_version_is_permanent(request, backend_fixture, model_name, version):
    backend = request.getfixturevalue(backend_fixture)
    with pytest.raises(PermanentBackendError, match=rf"{model_name} version {version}"):
        backend.stylize(model_name=model_name, version=version, images=photos((1, 16, 16, 3)),
            style_weights=LONE)


@pytest.mark.parametrize("backend_fixture", ["local_backend", "tfserving_backend"])
def test_image_the_model_rejects_is_permanent(request, backend_fixture):
    backend = request.getfixturevalue(backend_fixture)
    with pytest.raises(PermanentBackendError):  # the network needs at least 5 px a side
        backend.stylize(model_name="tiny", version=1, images=photos((1, 2, 2, 3)),
            style_weights=LONE)


@pytest.mark.parametrize("backend_fixture", ["local_backend", "tfserving_backend"])
def test_images_that_are_not_an_rgb_uint8_batch_are_permanent(request, backend_fixture):
    backend = request.getfixturevalue(backend_fixture)
    with pytest.raises(PermanentBackendError, match="uint8"):
        backend.stylize(model_name="tiny", version=1, images=np.zeros((1, 8, 8, 3), "float32"),
            style_weights=LONE)
    with pytest.raises(PermanentBackendError, match=r"\[N, H, W, 3\]"):
        backend.stylize(model_name="tiny", version=1, images=photos((8, 8, 3)),
            style_weights=LONE)


# --------------------------------------------------------------------------- get_backend


def test_get_backend_follows_model_backend_setting(settings, fresh_get_backend, tiny_serving_dir):
    settings.MODEL_BACKEND = "local"
    backend = fresh_get_backend()
    assert isinstance(backend, LocalBackend)
    assert fresh_get_backend() is backend  # one per process

    settings.MODEL_BACKEND = "tfserving"
    settings.TFSERVING_ADDRESS = "127.0.0.1:1"
    settings.TFSERVING_TIMEOUT = 7.5
    fresh_get_backend.cache_clear()
    backend = fresh_get_backend()
    assert isinstance(backend, TFServingBackend)
    assert (backend.address, backend.timeout) == ("127.0.0.1:1", 7.5)


def test_local_backend_reads_serving_dir_setting(settings, tiny_serving_dir):
    settings.SERVING_DIR = tiny_serving_dir
    backend = LocalBackend()
    assert backend.is_ready(model_name="tiny", version=1)
    assert not backend.is_ready(model_name="tiny", version=2)
    assert backend.stylize(model_name="tiny", version=1, images=photos((1, 8, 8, 3)),
            style_weights=LONE).shape == (
        1, 8, 8, 3,
    )


# --------------------------------------------------------------------------- local backend


def test_local_backend_loads_a_version_once(tiny_serving_dir):
    backend = LocalBackend(serving_dir=tiny_serving_dir)
    first = backend.stylize(model_name="tiny", version=1, images=photos((1, 16, 16, 3)),
            style_weights=LONE)
    second = backend.stylize(model_name="tiny", version=1, images=photos((1, 16, 16, 3)),
            style_weights=LONE)
    assert backend.load_count == 1
    np.testing.assert_array_equal(first, second)


def test_local_backend_switches_to_a_new_version_and_drops_the_old(two_version_serving_dir):
    backend = LocalBackend(serving_dir=two_version_serving_dir)
    images = photos((1, 24, 24, 3))
    old = backend.stylize(model_name="tiny", version=1, images=images, style_weights=lone(images))
    new = backend.stylize(model_name="tiny", version=2, images=images, style_weights=lone(images))
    assert backend.load_count == 2
    assert backend.loaded_versions() == {"tiny": 2}
    assert not np.array_equal(old, new)


def test_local_backend_loads_once_under_concurrent_first_calls(tiny_serving_dir):
    from concurrent.futures import ThreadPoolExecutor

    from ml.export import load_savedmodel_fn

    def slow_loader(path):
        time.sleep(0.2)  # widen the window two threads would both load in
        return load_savedmodel_fn(path)

    backend = LocalBackend(serving_dir=tiny_serving_dir, loader=slow_loader)
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda _: backend.stylize(
                    model_name="tiny", version=1, images=photos((1, 8, 8, 3)), style_weights=LONE
                ),
                range(4),
            )
        )
    assert backend.load_count == 1
    assert all(np.array_equal(result, results[0]) for result in results)


# --------------------------------------------------------------------------- TF Serving backend


def test_tfserving_readiness(tfserving_backend):
    assert tfserving_backend.is_ready(model_name="tiny", version=1)
    assert not tfserving_backend.is_ready(model_name="tiny", version=99)
    assert not tfserving_backend.is_ready(model_name="no-such-model", version=1)


def test_tfserving_not_ready_while_server_is_down():
    assert not TFServingBackend(address="127.0.0.1:1", timeout=2).is_ready(
        model_name="tiny", version=1
    )


def test_server_down_is_transient_and_the_same_backend_recovers(fake_tfserving):
    backend = TFServingBackend(address=fake_tfserving.address, timeout=5)
    images = photos((1, 16, 16, 3))
    expected = backend.stylize(model_name="tiny", version=1, images=images,
                               style_weights=lone(images))
    fake_tfserving.stop(grace=0)

    started = time.monotonic()
    with pytest.raises(TransientBackendError, match="unavailable") as caught:
        backend.stylize(model_name="tiny", version=1, images=images, style_weights=lone(images))
    assert caught.value.__cause__.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 2  # fails fast, not after the 5 s deadline

    port = fake_tfserving.port
    assert fake_tfserving.start() == port
    channel = backend.channel()
    deadline = time.monotonic() + 5
    while True:  # the channel reconnects within its (short) reconnect backoff
        try:
            result = backend.stylize(model_name="tiny", version=1, images=images,
                                     style_weights=lone(images))
            break
        except TransientBackendError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    np.testing.assert_array_equal(result, expected)
    assert backend.channel() is channel


def test_deadline_exceeded_is_transient(fake_tfserving):
    fake_tfserving.predict_delay = 3.0
    backend = TFServingBackend(address=fake_tfserving.address, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TransientBackendError, match=r"did not answer in 0\.3 s") as caught:
        backend.stylize(model_name="tiny", version=1, images=photos((1, 16, 16, 3)),
            style_weights=LONE)
    assert caught.value.__cause__.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2


def test_version_still_loading_is_transient(fake_tfserving):
    fake_tfserving.version_states[("tiny", 2)] = get_model_status_pb2.ModelVersionStatus.LOADING
    backend = TFServingBackend(address=fake_tfserving.address, timeout=10)
    assert not backend.is_ready(model_name="tiny", version=2)
    with pytest.raises(TransientBackendError, match="still loading"):
        backend.stylize(model_name="tiny", version=2, images=photos((1, 16, 16, 3)),
            style_weights=LONE)


def test_big_image_passes_over_grpc(tfserving_backend):
    # 12 MiB each way, over gRPC's default 4 MiB limit on received messages.
    images = np.full((1, 2048, 2048, 3), 120, dtype=np.uint8)
    stylized = tfserving_backend.stylize(model_name="tiny", version=1, images=images,
                                         style_weights=lone(images))
    assert stylized.shape == images.shape and stylized.dtype == np.uint8


def test_channel_is_reused_and_remade_after_fork(tfserving_backend, monkeypatch):
    import stylize.backends.tfserving as tfserving

    channel = tfserving_backend.channel()
    assert tfserving_backend.channel() is channel
    monkeypatch.setattr(tfserving.os, "getpid", lambda: -1)  # as in a forked worker
    assert tfserving_backend.channel() is not channel


# --------------------------------------------------------------------------- the test server itself


INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT


def raw_predict(address, model_name="tiny", version=None, signature="", inputs=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    if version is not None:
        request.model_spec.version.value = version
    request.model_spec.signature_name = signature
    for key, array in (inputs or {"images": photos((1, 8, 8, 3)), "style_weights": LONE}).items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(array))
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=10)


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"inputs": {"images": np.zeros((1, 8, 8, 3), "float32")}}, INVALID_ARGUMENT),
        ({"inputs": {"pixels": photos((1, 8, 8, 3))}}, INVALID_ARGUMENT),
        ({"inputs": {"images": photos((1, 8, 8, 4))}}, INVALID_ARGUMENT),
        ({"signature": "no_such_signature"}, grpc.StatusCode.FAILED_PRECONDITION),
        ({"version": 5}, grpc.StatusCode.NOT_FOUND),
        ({"model_name": "nope"}, grpc.StatusCode.NOT_FOUND),
    ],
)
def test_server_rejects_bad_requests_like_tf_serving(tfserving_server, kwargs, code):
    with pytest.raises(grpc.RpcError) as caught:
        raw_predict(tfserving_server, **kwargs)
    assert caught.value.code() == code


def test_server_answers_the_latest_version_when_none_is_asked(two_version_serving_dir):
    server, port = start_tfserving_server(two_version_serving_dir / "models")
    try:
        response = raw_predict(f"127.0.0.1:{port}")
    finally:
        server.stop(grace=0)
    assert response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"
    assert list(response.outputs) == ["stylized"]


def test_server_runs_as_a_process(tiny_serving_dir, settings):
    command = [sys.executable, "-m", "tests.tfserving_server"]
    command += ["--models", str(tiny_serving_dir / "models"), "--port", "0"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=settings.BASE_DIR,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line
        address = line.split()[-1]
        assert TFServingBackend(address=address, timeout=30).is_ready(model_name="tiny", version=1)
    finally:
        process.terminate()
    assert process.wait(timeout=30) == 0
