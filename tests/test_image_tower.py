"""Image reading, locked-text contrastive training, checkpoints and features (tiny synthetic data)."""

from __future__ import annotations

import io
import zipfile
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mmq.config import ConfigError, load_config
from mmq.data.schema import ImportReport, InteractionDataset
from mmq.features.images import decode_images, item_image_pixels, letterbox
from mmq.image_tower.checkpoint import load_checkpoint, save_checkpoint
from mmq.image_tower.data import augment, split_items
from mmq.image_tower.evaluate import cross_modal_metrics, encode_pixels, encode_text_embeddings, label_matrix
from mmq.image_tower.experiment import ImageTowerExperimentConfig
from mmq.image_tower.features import item_image_embeddings
from mmq.image_tower.model import ImageTextModel, ImageTowerConfig
from mmq.image_tower.train import TrainConfig, train_stage

COLOURS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 220, 20)]
TINY = ImageTowerConfig(embed_dim=16, image_size=32, layers=(1, 1, 1, 1), width=8, text_dim=12)


def _jpeg(colour, size=(30, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def image_zip(tmp_path):
    """A zip with 3 good JPEGs, one corrupt member; references also name a missing member/archive."""
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as archive:
        for index in range(3):
            archive.writestr(f"{index}.jpg", _jpeg(COLOURS[index]))
        archive.writestr("bad.jpg", b"not a jpeg at all")
    return tmp_path


def test_bad_and_missing_images_are_masked_and_counted(image_zip):
    references = ["images.zip:0.jpg", "images.zip:bad.jpg", "images.zip:1.jpg", "images.zip:gone.jpg",
                  "other.zip:0.jpg", "", "images.zip:2.jpg"]
    decoded = decode_images(references, 16, root=image_zip, progress=False)
    assert decoded.valid.tolist() == [True, False, True, False, False, False, True]
    assert decoded.report.counts == Counter(unreadable=1, missing_member=1, missing_archive=1, no_reference=1)
    assert decoded.pixels.shape == (7, 3, 16, 16) and decoded.pixels.dtype == np.uint8
    assert not decoded.pixels[~decoded.valid].any()                      # masked, nothing substituted
    assert decoded.pixels[0, 0, 8, 8] > 180 and decoded.pixels[0, 1, 8, 8] < 80  # red survived


def test_letterbox_keeps_aspect_and_pads_white():
    pixels = letterbox(Image.new("RGB", (30, 60), (0, 0, 0)), 20)
    assert pixels.shape == (3, 20, 20)
    assert pixels[:, :, 0].min() == 255 and pixels[:, 10, 10].max() == 0  # white side bars, black centre


def _synthetic(num_items=96, seed=0):
    """Class-coloured noisy images and class-aligned noisy text vectors (linearly separable)."""
    rng = np.random.default_rng(seed)
    classes = np.arange(num_items) % 4
    means = np.array(COLOURS, np.float32)[classes][:, :, None, None]      # [items, 3, 1, 1]
    pixels = means + rng.normal(0, 25, (num_items, 3, 32, 32))
    texts = np.eye(12, dtype=np.float32)[classes] + rng.normal(0, 0.1, (num_items, 12)).astype(np.float32)
    labels = np.eye(4, dtype=bool)[classes]
    return np.clip(pixels, 0, 255).astype(np.uint8), texts, labels


def test_contrastive_training_lowers_loss_and_beats_random_init(tmp_path):
    torch.set_num_threads(1)
    pixels, texts, labels = _synthetic()
    split = split_items(np.ones(len(pixels), bool), valid_size=16, test_size=16, seed=0)
    torch.manual_seed(0)
    model = ImageTextModel(config=TINY)
    random_model = ImageTextModel(config=TINY)
    random_model.load_state_dict(model.state_dict())
    config = TrainConfig(epochs=6, batch_size=16, learning_rate=3e-3, warmup_steps=2, augment_pad=2,
                         selection_metric="text_to_image/category_precision@10", cpu=True)
    result = train_stage(model, config, tmp_path / "stage", pixels=pixels, texts=texts, labels=labels,
                         split=split, seed=0, progress=False)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    best, _ = load_checkpoint(result.best_path)
    test = split.test

    def precision(tower):
        metrics = cross_modal_metrics(encode_pixels(tower, pixels[test]), encode_text_embeddings(tower, texts[test]),
                                      labels[test], ks=(1, 5), precision_k=5)
        return metrics["text_to_image/category_precision@5"]
    assert precision(best) > precision(random_model) + 0.2
    assert precision(best) >= 0.6


def test_training_resumes_from_state(tmp_path):
    torch.set_num_threads(1)
    pixels, texts, labels = _synthetic(64)
    split = split_items(np.ones(len(pixels), bool), valid_size=16, test_size=8, seed=1)
    config = TrainConfig(epochs=2, batch_size=16, warmup_steps=1, cpu=True)
    torch.manual_seed(0)
    train_stage(ImageTextModel(config=TINY), config, tmp_path, pixels=pixels, texts=texts, labels=labels,
                split=split, seed=0, progress=False)
    longer = TrainConfig(epochs=3, batch_size=16, warmup_steps=1, cpu=True)
    result = train_stage(ImageTextModel(config=TINY), longer, tmp_path, pixels=pixels, texts=texts,
                         labels=labels, split=split, seed=0, progress=False)
    assert [entry["epoch"] for entry in result.history] == [1, 2, 3]  # epochs 1-2 came from state.pt


def test_checkpoint_reload_gives_identical_embeddings(tmp_path):
    torch.manual_seed(0)
    model = ImageTextModel(config=TINY).eval()
    pixels, texts, _ = _synthetic(8)
    save_checkpoint(tmp_path / "best.pt", model, epoch=1)
    reloaded, payload = load_checkpoint(tmp_path / "best.pt")
    assert payload["tower_config"]["width"] == 8
    np.testing.assert_array_equal(encode_pixels(model, pixels), encode_pixels(reloaded, pixels))
    np.testing.assert_array_equal(encode_text_embeddings(model, texts), encode_text_embeddings(reloaded, texts))


def test_item_image_embeddings_cached_with_invalid_rows(image_zip, isolated_dirs, monkeypatch):
    monkeypatch.setenv("MMQ_DATA_DIR", str(image_zip))
    items = pd.DataFrame({"item_index": range(4), "item_id": list("abcd"), "title": list("wxyz"),
                          "image": ["images.zip:0.jpg", "images.zip:bad.jpg", "images.zip:1.jpg", ""]})
    dataset = InteractionDataset("tiny", items, pd.DataFrame(), ImportReport("tiny"), ("title",))
    torch.manual_seed(0)
    save_checkpoint(isolated_dirs / "ckpt" / "best.pt", ImageTextModel(config=TINY).eval())
    features = item_image_embeddings(dataset, isolated_dirs / "ckpt", progress=False)
    assert features.embeddings.shape == (4, 16) and features.valid.tolist() == [True, False, True, False]
    assert np.allclose(np.linalg.norm(features.embeddings[features.valid], axis=1), 1.0, atol=1e-5)
    assert not features.embeddings[~features.valid].any()
    again = item_image_embeddings(dataset, isolated_dirs / "ckpt", progress=False)  # from the cache
    np.testing.assert_array_equal(features.embeddings, again.embeddings)
    assert item_image_pixels(dataset, 32, progress=False).report.counts["unreadable"] == 1


def test_split_is_disjoint_and_seeded():
    eligible = np.ones(100, bool)
    eligible[[3, 7]] = False
    first = split_items(eligible, valid_size=10, test_size=20, seed=5)
    assert len(first.test) == 20 and len(first.valid) == 10 and len(first.train) == 68
    assert not set(first.test) & set(first.train) and not set(first.valid) & set(first.train)
    assert 3 not in np.concatenate(first) and 7 not in np.concatenate(first)
    np.testing.assert_array_equal(first.test, split_items(eligible, valid_size=10, test_size=20, seed=5).test)


def test_augment_keeps_shape_and_label_matrix_multi_label():
    pixels = torch.randint(0, 255, (4, 3, 16, 16), dtype=torch.uint8)
    out = augment(pixels, pad=2, flip=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 16, 16)
    items = pd.DataFrame({"genres": ["Comedy, Drama", "Drama", ""]})
    dataset = InteractionDataset("x", items, pd.DataFrame(), ImportReport("x"), ())
    assert label_matrix(dataset, "genres", separator=",").tolist() == [[True, True], [False, True], [False, False]]


def test_config_rejects_unknown_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("tower:\n  widht: 32\n")
    with pytest.raises(ConfigError, match="widht"):
        load_config(ImageTowerExperimentConfig, path)
    path.write_text("myntra:\n  epochs: 3\ntower:\n  width: 24\nmovielens:\n  epochs: 9\n")
    config = load_config(ImageTowerExperimentConfig, path)
    assert config.myntra.epochs == 3 and config.tower.width == 24
    # overriding one field of the poster stage keeps its other (MovieLens) defaults
    assert config.movielens.epochs == 9 and config.movielens.dataset == "movielens"
    assert config.movielens.text_recipe == ("title", "year", "genres") and config.movielens.init_from == "myntra"


def test_real_data_smoke(tmp_path, monkeypatch):
    """Decode a few real Myntra and MovieLens images when the shared data exists."""
    from mmq.data.paths import data_dir

    root = data_dir()
    if not (root / "myntra" / "images.zip").is_file() or not (root / "movielens" / "posters.zip").is_file():
        pytest.skip(f"real images not found under MMQ_DATA_DIR={root}")
    with zipfile.ZipFile(root / "myntra" / "images.zip") as archive:
        myntra = [f"myntra/images.zip:{name}" for name in archive.namelist()[:8] if name.endswith(".jpg")]
    references = myntra + ["movielens/posters.zip:1.jpg"]
    decoded = decode_images(references, 64, root=root, progress=False)
    assert decoded.valid.all() and decoded.pixels.std() > 10
    torch.manual_seed(0)
    features = encode_pixels(ImageTextModel(config=ImageTowerConfig()).eval(), decoded.pixels)
    assert features.shape == (len(references), 256) and np.isfinite(features).all()


def test_end_to_end_tiny_myntra_through_the_script(tmp_path, isolated_dirs, monkeypatch):
    """scripts/run.py (image tower kind) on a 48-product fake Myntra: report, checkpoint, cached features."""
    import json

    from scripts.run import main

    root = tmp_path / "data"
    (root / "myntra").mkdir(parents=True)
    header = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
    kinds = ["Tshirts", "Jeans", "Watches", "Sandals"]
    lines = [header] + [f"{index},Men,Apparel,Topwear,{kinds[index % 4]},{['Red', 'Green', 'Blue', 'Yellow'][index % 4]},"
                        f"Summer,2012,Casual,Product {index} {kinds[index % 4]}" for index in range(48)]
    with zipfile.ZipFile(root / "myntra" / "styles.csv.zip", "w") as archive:
        archive.writestr("styles.csv", "\n".join(lines) + "\n")
    with zipfile.ZipFile(root / "myntra" / "images.zip", "w") as archive:
        for index in range(48):
            archive.writestr(f"{index}.jpg", _jpeg(COLOURS[index % 4]) if index != 5 else b"broken")
    monkeypatch.setenv("MMQ_DATA_DIR", str(root))
    monkeypatch.setenv("MMQ_ALLOW_DATA_MISMATCH", "1")  # a 48-product fake under the shipped name "myntra"
    config = tmp_path / "tiny.yaml"
    config.write_text("kind: image_tower\ntower: {embed_dim: 16, image_size: 32, width: 8}\n"
                      "myntra: {valid_size: 10, test_size: 12, epochs: 1, batch_size: 16, warmup_steps: 1}\n"
                      "stages: [myntra]\nfeature_datasets: [[myntra, -1, myntra]]\nnum_threads: 1\n")
    assert main([str(config), "--no-progress"]) == 0
    report = json.loads(next((isolated_dirs / "checkpoints").rglob("report.json")).read_text())
    stage = report["metrics"]["stages"]["myntra"]
    assert stage["image_read_report"]["counts"] == {"unreadable": 1}
    assert stage["split_sizes"] == {"train": 25, "valid": 10, "test": 12, "trained_on": 25}
    assert set(stage["test"]) == {"trained", "random_init"} and stage["test"]["trained"]["gallery_size"] == 12
    assert report["metrics"]["features"]["myntra"]["shape"] == [48, 16]
    assert report["metrics"]["features"]["myntra"]["num_valid"] == 47
