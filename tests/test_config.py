import pytest

from dogbreed.config import Hyperparameters, UserError


def test_defaults_are_valid():
    from dogbreed.config import PRESETS

    hp = Hyperparameters()
    assert hp.preset == "balanced" and hp.backbone_name == PRESETS["balanced"]["backbone"]
    assert Hyperparameters(preset="fast").backbone_name == "efficientnet_lite0"


def test_num_layers_picks_resnet_like_sagemaker():
    assert Hyperparameters.from_mapping({"num_layers": "18"}).backbone_name == "resnet18"


def test_values_from_strings_are_typed():
    hp = Hyperparameters.from_mapping({"learning_rate": "0.01", "mini_batch_size": "8", "early_stopping": "true"})
    assert hp.learning_rate == 0.01 and hp.mini_batch_size == 8 and hp.early_stopping is True


@pytest.mark.parametrize("values, message", [
    ({"learning_rate": 0}, "learning_rate=0.0 is out of range"),
    ({"learning_rate": -1}, "out of range"),
    ({"mini_batch_size": 0}, "mini_batch_size=0 is out of range"),
    ({"momentum": 1.5}, "momentum=1.5 is out of range"),
    ({"momentum": -0.1}, "momentum=-0.1 is out of range"),
    ({"optimizer": "lion"}, "optimizer='lion' is not one of"),
    ({"augmentation_type": "mixup"}, "is not one of"),
    ({"bogus": 1}, "unknown hyperparameter 'bogus'"),
    ({"epochs": "many"}, "epochs='many' is not a whole number"),
    ({"lr_scheduler_step": "a,b"}, "comma-separated"),
])
def test_bad_values_are_user_errors(values, message):
    with pytest.raises(UserError, match=message):
        Hyperparameters.from_mapping(values)


def test_float16_needs_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match="float16 needs a GPU"):
        Hyperparameters(precision_dtype="float16")
