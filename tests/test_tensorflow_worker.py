"""The long-lived TensorFlow worker: a model trained as a later job equals, bit for bit, one
trained by a fresh process; a failed job leaves the worker serving; a dead worker is replaced."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.files.images import read_mask, write_tiff
from rescale4dl_bmz.models import load_model, make_config
from rescale4dl_bmz.sweep.tensorflow_worker import TensorFlowWorker, WorkerJobFailed

from test_models_training import TINY_STARDIST, TINY_UNET, blobs


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("worker_data")
    images, masks = blobs(4)
    return ([write_tiff(root / f"image{i}.tif", a) for i, a in enumerate(images)],
            [write_tiff(root / f"mask{i}.tif", m) for i, m in enumerate(masks)])


def _weights(folder):
    return load_model(folder).keras_model.get_weights()


def _same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_later_jobs_train_the_same_weights_as_a_fresh_process(tmp_path, files):
    unet = make_config("semantic", steps=3, **TINY_UNET)
    stardist = make_config("instance", steps=3, **TINY_STARDIST)
    busy, fresh = TensorFlowWorker(), TensorFlowWorker()
    try:
        busy.train(*files, stardist, tmp_path / "stardist_1", tmp_path / "1.log")
        busy.train(*files, unet, tmp_path / "unet_2", tmp_path / "2.log")   # after another network
        busy.train(*files, stardist, tmp_path / "stardist_3", tmp_path / "3.log")  # after a U-Net
        fresh.train(*files, unet, tmp_path / "unet_fresh", tmp_path / "fresh.log")  # first job of a new process
        assert busy.started == 1 and fresh.started == 1 and busy.pid != fresh.pid
    finally:
        busy.close()
        fresh.close()
    assert _same(_weights(tmp_path / "unet_2"), _weights(tmp_path / "unet_fresh"))
    assert _same(_weights(tmp_path / "stardist_1"), _weights(tmp_path / "stardist_3"))
    other_seed = make_config("semantic", steps=3, seed=1, **TINY_UNET)
    worker = TensorFlowWorker()
    try:
        worker.train(*files, other_seed, tmp_path / "unet_seed1", tmp_path / "seed1.log")
    finally:
        worker.close()
    assert not _same(_weights(tmp_path / "unet_2"), _weights(tmp_path / "unet_seed1"))  # the check can fail


def test_prediction_in_the_worker_matches_the_model_and_is_timed_warm(tmp_path, files):
    unet = make_config("semantic", steps=2, **TINY_UNET)
    worker = TensorFlowWorker()
    try:
        worker.train(*files, unet, tmp_path / "model", tmp_path / "train.log")
        outputs = [tmp_path / "pred" / f"p{i}.tif" for i in range(2)]
        timing = worker.predict(tmp_path / "model", files[0][:2], outputs, 0.5, tmp_path / "predict.log")
    finally:
        worker.close()
    from rescale4dl_bmz.files.images import read_image, read_pixel_size

    model = load_model(tmp_path / "model")
    for src, out in zip(files[0][:2], outputs):
        assert np.array_equal(read_mask(out), model.predict(read_image(src)))
        assert read_pixel_size(out) == pytest.approx(0.5)
    assert 0 < timing["warm_s"] < timing["first_pass_s"]  # the first pass includes tracing


def test_a_failed_job_is_named_and_the_worker_goes_on(tmp_path, files):
    unet = make_config("semantic", steps=1, **TINY_UNET)
    worker = TensorFlowWorker()
    try:
        with pytest.raises(WorkerJobFailed) as err:
            worker.train([files[0][0]], [tmp_path / "missing.tif"], unet, tmp_path / "bad", tmp_path / "bad.log")
        assert "missing.tif" in err.value.cause and err.value.log == str(tmp_path / "bad.log")
        assert isinstance(err.value, InputError)  # bad input stays bad input (exit code 2), named
        assert "Traceback" in (tmp_path / "bad.log").read_text()
        pid = worker.pid
        worker.train(*files, unet, tmp_path / "good", tmp_path / "good.log")
        assert worker.pid == pid and worker.started == 1 and (tmp_path / "good" / "cost.json").is_file()
    finally:
        worker.close()
    assert worker.pid is None


def test_a_killed_worker_fails_its_job_and_the_next_job_starts_a_new_one(tmp_path, files):
    unet = make_config("semantic", steps=1, **TINY_UNET)
    worker = TensorFlowWorker()
    try:
        worker.train(*files, unet, tmp_path / "a", tmp_path / "a.log")
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(WorkerJobFailed, match="exited with code -9"):
            worker.train(*files, unet, tmp_path / "b", tmp_path / "b.log")
        worker.train(*files, unet, tmp_path / "c", tmp_path / "c.log")
        assert worker.started == 2
        assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "c"))
    finally:
        worker.close()
