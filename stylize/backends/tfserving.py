"""Call TensorFlow Serving over gRPC (``PredictionService.Predict``)."""

from __future__ import annotations

import os
import threading

import grpc
import numpy as np
from django.conf import settings
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from ml.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    PARAMS_INPUT_NAME,
    PARAMS_SIGNATURE_NAME,
    SIGNATURE_NAME,
    WEIGHTS_INPUT_NAME,
)
from stylize.backends.base import (
    BackendError,
    ModelBackend,
    PermanentBackendError,
    TransientBackendError,
)

# A 4096x4096 RGB uint8 image is 48 MiB each way; gRPC's default limit is 4 MiB.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # gRPC's reconnect backoff grows to 120 s by default, and while it waits every
    # call fails at once: keep it short so a restarted server is used again quickly.
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]

TRANSIENT_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}
LOADING_STATES = {
    get_model_status_pb2.ModelVersionStatus.START,
    get_model_status_pb2.ModelVersionStatus.LOADING,
}


class TFServingBackend(ModelBackend):
    """One gRPC channel per process to TF Serving at ``settings.TFSERVING_ADDRESS``."""

    def __init__(self, address: str | None = None, timeout: float | None = None):
        self.address = address or settings.TFSERVING_ADDRESS
        self.timeout = float(timeout if timeout is not None else settings.TFSERVING_TIMEOUT)
        self._channel = None
        self._channel_pid = None
        self._lock = threading.Lock()

    def _paint(self, *, model_name: str, version: int, images: np.ndarray,
               style_weights: np.ndarray, style_params: np.ndarray | None):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.version.value = int(version)
        # An own style's row goes through the bank's second signature.
        request.model_spec.signature_name = (
            SIGNATURE_NAME if style_params is None else PARAMS_SIGNATURE_NAME)
        request.inputs[INPUT_NAME].CopyFrom(tensor_proto(images, types_pb2.DT_UINT8))
        request.inputs[WEIGHTS_INPUT_NAME].CopyFrom(tensor_proto(style_weights, types_pb2.DT_FLOAT))
        if style_params is not None:
            request.inputs[PARAMS_INPUT_NAME].CopyFrom(
                tensor_proto(style_params, types_pb2.DT_FLOAT))
        request.output_filter.append(OUTPUT_NAME)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel())
        try:
            response = stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise self._predict_error(error, model_name, version) from error
        if OUTPUT_NAME not in response.outputs:
            raise PermanentBackendError(
                f"Model {model_name} version {version} returned no {OUTPUT_NAME!r} output."
            )
        return uint8_array(response.outputs[OUTPUT_NAME], model_name=model_name, version=version)

    def is_ready(self, *, model_name: str, version: int) -> bool:
        try:
            state = self.version_state(model_name=model_name, version=version)
        except BackendError:
            return False
        return state == get_model_status_pb2.ModelVersionStatus.AVAILABLE

    def version_state(self, *, model_name: str, version: int) -> int:
        """``ModelVersionStatus.State`` of this version; NOT_FOUND → PermanentBackendError."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model_name
        request.model_spec.version.value = int(version)
        stub = model_service_pb2_grpc.ModelServiceStub(self.channel())
        try:
            response = stub.GetModelStatus(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise self._error(error, model_name, version) from error
        for status in response.model_version_status:
            if status.version == int(version):
                return status.state
        return get_model_status_pb2.ModelVersionStatus.UNKNOWN

    def channel(self) -> grpc.Channel:
        """This process's channel, made on first use and again after a fork.

        A gRPC channel must not be used across fork (Celery's prefork pool), so a
        child process makes its own instead of using the parent's.
        """
        pid = os.getpid()
        if self._channel is None or self._channel_pid != pid:
            with self._lock:
                if self._channel is None or self._channel_pid != pid:
                    self._channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
                    self._channel_pid = pid
        return self._channel

    def close(self) -> None:
        with self._lock:
            if self._channel is not None and self._channel_pid == os.getpid():
                self._channel.close()
            self._channel = None

    def _predict_error(self, error: grpc.RpcError, model_name: str, version: int) -> BackendError:
        mapped = self._error(error, model_name, version)
        if error.code() == grpc.StatusCode.NOT_FOUND and self._is_loading(model_name, version):
            return TransientBackendError(
                f"The model server is still loading model {model_name} version {version}."
            )
        return mapped

    def _is_loading(self, model_name: str, version: int) -> bool:
        try:
            return self.version_state(model_name=model_name, version=version) in LOADING_STATES
        except BackendError:
            return False

    def _error(self, error: grpc.RpcError, model_name: str, version: int) -> BackendError:
        code, details = error.code(), error.details() or ""
        model = f"model {model_name} version {version}"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return TransientBackendError(
                f"The model server did not answer in {self.timeout:g} s ({model})."
            )
        if code == grpc.StatusCode.UNAVAILABLE:
            return TransientBackendError(
                f"The model server at {self.address} is unavailable: {details}"
            )
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
            # gRPC's own message-size check: the same image will never fit.
            return PermanentBackendError(f"The image is too large for the model server: {details}")
        if code in TRANSIENT_CODES:
            return TransientBackendError(f"The model server is busy ({code.name}): {details}")
        if code == grpc.StatusCode.NOT_FOUND:
            return PermanentBackendError(f"The model server does not have {model}: {details}")
        return PermanentBackendError(
            f"The model server refused {model} ({code.name}): {details}"
        )


def tensor_proto(array: np.ndarray, dtype: int) -> tensor_pb2.TensorProto:
    """A TensorProto of ``array`` (already of ``dtype``: uint8 or float32) as raw bytes."""
    return tensor_pb2.TensorProto(
        dtype=dtype,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]
        ),
        tensor_content=np.ascontiguousarray(array).tobytes(),
    )


def uint8_array(proto: tensor_pb2.TensorProto, *, model_name: str, version: int) -> np.ndarray:
    if proto.dtype != types_pb2.DT_UINT8:
        raise PermanentBackendError(
            f"Model {model_name} version {version} returned "
            f"{types_pb2.DataType.Name(proto.dtype)} instead of uint8 images."
        )
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    # Servers send tensor_content, but the proto also allows values in int_val.
    if proto.tensor_content:
        values = np.frombuffer(proto.tensor_content, dtype=np.uint8)
    else:
        values = np.asarray(proto.int_val, dtype=np.uint8)
    if values.size != int(np.prod(shape)):
        raise PermanentBackendError(
            f"Model {model_name} version {version} returned {values.size} values "
            f"for shape {shape}."
        )
    return values.reshape(shape)
