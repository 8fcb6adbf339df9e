"""Helpers shared by test modules (fixtures live in conftest.py files)."""

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2


class TrainingCaptured(Exception):
    """Raised by the fake ml.train.train once it holds the TrainConfig."""


def read_models_config(serving_dir):
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((serving_dir / "models.config").read_text(), config)
    return config.model_config_list.config
