"""The served path (validate JSON records → encode → model) equals the fitted pipeline on
every training row."""

import math

import numpy as np
import msgspec
import pytest

from helpers import ROOT, records_from_csv
from tabserve.tables import load_csv
from tabserve.serving.decoding import BodyDecoder
from tabserve.model.validation import validate
from tabserve.serving.codecs import json_answers
from tabserve.serving.codecs.json_answers import JsonAnswers
from tabserve.serving.core import Predictor
from tabserve.training.trainer import CANDIDATES, train
from tabserve.web.config import SPEEDUPS, ConfigError, Settings


@pytest.mark.parametrize("csv_name, target", [
    ("telco", "churn"), ("loan_csv", "approved"), ("flower_csv", "species"),
])
@pytest.mark.parametrize("candidate", CANDIDATES)
def test_served_probabilities_equal_the_pipeline(request, csv_name, target, candidate):
    """For every model kind the trainer can choose, on binary and multiclass data."""
    csv = ROOT / "data" / "telco_churn.csv" if csv_name == "telco" else \
        request.getfixturevalue(csv_name)
    frame = load_csv(csv)
    result = train(frame, target, seed=1, folds=2, candidates=[candidate],
                   max_trials=2 if candidate == "blend" else 1,  # a blend needs its members
                   threshold_rule="f1")
    bundle = result.bundle.stamp(data_path=csv, data_sha256="", seed=1)
    frame = frame[frame[bundle.schema.target].notna()]
    expected = bundle.predict_proba(frame)  # the fitted pipeline, then any calibration
    records = records_from_csv(frame, bundle.schema)
    predictor = Predictor(bundle)
    answers = JsonAnswers(predictor)
    assert bundle.content_version() == bundle.version  # serving leaves the model as saved
    decoder = BodyDecoder(bundle.schema, max_records=len(records))

    def probabilities(answers) -> np.ndarray:
        answers = msgspec.to_builtins(answers)
        return np.array([[a["probabilities"][c] for c in bundle.classes] for a in answers])

    paths = {
        # dicts through the collecting validator (the general path)
        "validator": probabilities(answers.for_records(records)),
        # one batch body through the typed decoder and the columnar path
        "batch": probabilities(answers.for_body(decoder.decode(msgspec.json.encode(records)))),
        # each record as its own body: the single-row path
        "single": probabilities([answers.for_body(decoder.decode(msgspec.json.encode(r)))[0]
                                 for r in records]),
    }
    for path, served in paths.items():
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6, err_msg=path)


def test_the_shipped_model_serves_its_boosters_answers_on_every_telco_row(telco_bundle):
    """The committed model, whose trees a batch scores by table lookups (`TreeTables`), gives
    what XGBoost's own walk of its booster gives (the tables turned off)."""
    from tabserve.serving.scorers import BoosterScorer

    predictor = Predictor(telco_bundle)
    boosters = [m for m in getattr(predictor.scorer, "members", [predictor.scorer])
                if isinstance(m, BoosterScorer)]
    assert boosters and all(b.tables is not None for b in boosters)
    frame = load_csv(ROOT / "data" / "telco_churn.csv")
    records = records_from_csv(frame, telco_bundle.schema)
    decoder = BodyDecoder(telco_bundle.schema, max_records=len(records))
    body = msgspec.json.encode(records)

    def served(predictor) -> np.ndarray:
        answers = msgspec.to_builtins(JsonAnswers(predictor).for_body(decoder.decode(body)))
        return np.array([[a["probabilities"][c] for c in telco_bundle.classes] for a in answers])

    by_booster = Predictor(telco_bundle, speedups_off=frozenset({"tree_tables"}))
    assert all(m.tables is None for m in by_booster.scorer.members if isinstance(m, BoosterScorer))
    np.testing.assert_allclose(served(predictor), served(by_booster), rtol=0, atol=1e-6)


def test_a_plain_single_record_takes_the_row_path(telco_bundle, telco_record, monkeypatch):
    """The single-row path answers without the validator; anything unusual falls back to it."""
    answers = JsonAnswers(Predictor(telco_bundle))
    decoder = BodyDecoder(telco_bundle.schema, max_records=10)
    calls = []
    original = json_answers.validate
    monkeypatch.setattr(json_answers, "validate",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    answers.for_body(decoder.decode(msgspec.json.encode(telco_record)))
    assert calls == []
    unseen = {**telco_record, "contract": "Ten year"}
    answer = answers.for_body(decoder.decode(msgspec.json.encode(unseen)))[0]
    assert calls == [1] and "unseen category" in answer.warnings[0]


def test_hinges_bend_only_continuous_columns_inside_their_range():
    from tabserve.model.sklearn_steps import Hinges

    rng = np.random.default_rng(0)
    matrix = np.column_stack([rng.normal(size=500), rng.integers(0, 2, 500),
                              rng.integers(0, 3, 500).astype(float)])
    hinges = Hinges(knots=4).fit(matrix)
    assert hinges.columns_.tolist() == [0, 0, 0, 0]  # flags and 3-level codes get none
    assert np.allclose(hinges.knots_, np.quantile(matrix[:, 0], [0.2, 0.4, 0.6, 0.8]))
    expanded = hinges.transform(matrix)
    assert expanded.shape == (500, 7)
    assert np.array_equal(expanded[:, 3:], np.maximum(matrix[:, [0]] - hinges.knots_, 0))
    assert Hinges(knots=0).fit(matrix).transform(matrix).shape == (500, 3)


def test_an_ordered_field_gets_a_rank_column(flower_bundle):
    encoder = flower_bundle.pipeline.named_steps["encode"].encoder_
    assert flower_bundle.schema.field("size").order == ("Small", "Medium", "Large")
    rank = encoder.feature_names.index("size (rank)")
    record = {**flower_bundle.example, "size": "Large"}
    columns = validate(flower_bundle.schema, [record, {**record, "size": "Huge"}]).columns
    assert encoder.encode(columns)[:, rank].tolist()[0] == 2.0
    assert math.isnan(encoder.encode(columns)[1, rank])  # an unseen level has no rank
    row = tuple(record[name] for name in flower_bundle.schema.names)
    assert encoder.encode_row(row)[rank] == 2.0


@pytest.mark.parametrize("classes", [2, 3])
def test_the_single_record_tree_walk_equals_the_booster(classes):
    """Trees walked as arrays give the booster's raw scores, with missing values and a number
    beyond float32's range among the features."""
    from xgboost import XGBClassifier

    from tabserve.model.xgboost_trees import trees_from_booster
    from tabserve.serving.scorers.trees import TreeArrays

    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(400, 6))
    y = (matrix[:, 0] + matrix[:, 1] * matrix[:, 2] > 0).astype(int) + \
        (matrix[:, 3] > 1 if classes == 3 else 0)
    matrix[rng.random(matrix.shape) < 0.1] = np.nan  # the model learns default branches
    model = XGBClassifier(n_estimators=40, max_depth=4, n_jobs=1).fit(matrix, y)
    matrix[0, 1] = 1e300
    arrays = TreeArrays(trees_from_booster(model.get_booster(), classes))
    expected = model.get_booster().inplace_predict(matrix, predict_type="margin").reshape(
        len(matrix), -1)  # as served batches are: a DMatrix would refuse the infinity
    for x, margins in zip(matrix.tolist(), expected):
        np.testing.assert_allclose(arrays.margins_row(x), margins, rtol=0, atol=1e-5)


def test_trees_written_without_their_base_margin_have_it_measured_alike():
    """A file's trees written before their base margin was stored are served alike: the
    margin is measured when they load (with XGBoost); a stored one must fit the outputs."""
    from tabserve.model.bundle import ModelBundle
    from tabserve.model.fitted import ModelFileError
    from tabserve.serving.scorers.trees import TreeArrays

    trees = ModelBundle.load(ROOT / "model.bin").model.members[1]
    assert trees.base_margin is not None
    older = msgspec.structs.replace(trees, base_margin=None)
    assert TreeArrays(older).base_margin.tolist() == trees.base_margin
    for wrong in ([0.0, 0.0], [math.inf]):
        with pytest.raises(ModelFileError, match="base margin"):
            msgspec.structs.replace(trees, base_margin=wrong).check(trees.n_features, 2)


@pytest.mark.parametrize("classes", [2, 3])
def test_batch_tree_tables_equal_the_booster(classes):
    """Small trees scored as table lookups give the booster's raw scores for a batch, with
    missing values, a number beyond float32's range, records split over several chunks and a
    record count that is no multiple of 8; trees with more than 8 splits are left to the
    booster."""
    from xgboost import XGBClassifier

    from tabserve.model.from_sklearn import boosted_trees
    from tabserve.model.xgboost_trees import trees_from_booster
    from tabserve.serving.scorers.trees import BoosterScorer, TreeArrays, TreeTables

    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(1001, 6))
    y = (matrix[:, 0] + matrix[:, 1] * matrix[:, 2] > 0).astype(int) + \
        (matrix[:, 3] > 1 if classes == 3 else 0)
    matrix[rng.random(matrix.shape) < 0.1] = np.nan  # the model learns default branches
    # depth 3 (up to 7 splits), pruned deeper trees of up to 8 splits (9 leaves), and enough
    # trees that their tables outgrow 16-bit indices
    # trees of depth 2 and stumps share a byte per group (2 and 8 trees), counts that leave the
    # last group short
    small = [XGBClassifier(n_estimators=30, max_depth=3, n_jobs=1),
             XGBClassifier(n_estimators=30, max_depth=6, max_leaves=9, grow_policy="lossguide",
                           tree_method="hist", n_jobs=1),
             XGBClassifier(n_estimators=520, max_depth=3, learning_rate=0.02, n_jobs=1),
             XGBClassifier(n_estimators=31, max_depth=2, n_jobs=1),
             XGBClassifier(n_estimators=13, max_depth=1, n_jobs=1)]
    served = matrix.copy()
    served[0, 1], served[1, 2] = 1e300, -1e300  # XGBoost only refuses these in training
    for model in small:
        model.fit(matrix, y)
        arrays = TreeArrays(trees_from_booster(model.get_booster(), classes))
        tables, one_per_tree = TreeTables(arrays), TreeTables(arrays, grouped=False)
        assert tables.fits
        if model.max_depth < 3:
            assert tables.split_at.shape[1] < one_per_tree.split_at.shape[1]
        tables.CHUNK_BYTES = 8 * 30 * classes * 64  # several chunks of records
        expected = model.get_booster().inplace_predict(served, predict_type="margin").reshape(
            len(served), -1)
        np.testing.assert_allclose(tables.margins(served), expected, rtol=0, atol=1e-5)
        np.testing.assert_allclose(tables.margins(served[:3]), expected[:3], rtol=0, atol=1e-5)
        assert tables.margins(served[:0]).shape == (0, 1 if classes == 2 else classes)
        np.testing.assert_allclose(tables.margins(served), one_per_tree.margins(served),
                                   rtol=0, atol=1e-12)
        assert BoosterScorer(boosted_trees([model])).tables is not None
        if model.n_estimators == 520:
            assert tables.offsets.dtype == np.int32
    deep = XGBClassifier(n_estimators=5, max_depth=5, n_jobs=1).fit(matrix, y)
    assert not TreeTables(TreeArrays(trees_from_booster(deep.get_booster(), classes))).fits
    assert BoosterScorer(boosted_trees([deep])).tables is None


@pytest.mark.parametrize("classes", [2, 3])
def test_forest_single_records_equal_scikit_learn(classes):
    """A RandomForest's and ExtraTrees' single-record walk gives their `predict_proba`, with
    missing values (RandomForest) and with values on either side of each split's threshold in
    float32."""
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.pipeline import Pipeline

    from tabserve.model.from_sklearn import translated
    from tabserve.serving.scorers import compile_model
    from tabserve.serving.scorers.forest import ForestScorer

    rng = np.random.default_rng(2)
    matrix = rng.normal(size=(600, 5))
    y = (matrix[:, 0] + matrix[:, 1] * matrix[:, 2] > 0).astype(int) + \
        (matrix[:, 3] > 1 if classes == 3 else 0)
    with_missing = np.where(rng.random(matrix.shape) < 0.1, np.nan, matrix)
    for forest, matrix in (  # ExtraTrees refuses missing values
            (RandomForestClassifier(n_estimators=20, min_samples_leaf=2, random_state=0),
             with_missing),
            (ExtraTreesClassifier(n_estimators=20, random_state=0), matrix)):
        forest.fit(matrix, y)
        scorer = compile_model(translated(Pipeline([("model", forest)])))
        assert isinstance(scorer, ForestScorer)
        tree = forest.estimators_[0].tree_
        edges = []  # a record on the float32 at or below each root-tree threshold, and above
        split = (tree.feature >= 0) & np.isfinite(tree.threshold)  # inf: missing vs the rest
        for feature, threshold in zip(tree.feature[split], tree.threshold[split]):
            below = np.float32(threshold)
            below = below if below <= threshold else np.nextafter(below, np.float32(-np.inf))
            for value in (below, np.nextafter(below, np.float32(np.inf))):
                record = matrix[0].copy()
                record[feature] = value
                edges.append(record)
        records = np.vstack([matrix, edges])
        expected = forest.predict_proba(records)
        for x, probabilities in zip(records.tolist(), expected):
            np.testing.assert_allclose(scorer.row(x), probabilities, rtol=0, atol=1e-12)
        # a batch: the forest's own numbers to the bit, and beyond float32's range too
        np.testing.assert_array_equal(scorer(records), expected)
        huge = records[:4].copy()
        huge[0, 0], huge[1, 1], huge[2, 2] = 1e300, -1e300, np.finfo(np.float32).max
        np.testing.assert_allclose(
            scorer(huge), [scorer.row(x) for x in huge.tolist()], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", SPEEDUPS)
def test_each_speed_mechanism_off_answers_the_same(telco_bundle, name):
    """`SPEEDUPS_OFF` (for the benchmark's ablation runs) changes how, never what, is answered."""
    records = records_from_csv(load_csv(ROOT / "data" / "telco_churn.csv").head(300),
                               telco_bundle.schema)
    answers = {}
    for off in (frozenset(), frozenset({name})):
        json_door = JsonAnswers(Predictor(telco_bundle, off))
        decoder = BodyDecoder(telco_bundle.schema, 1000, off)
        batch = json_door.for_body(decoder.decode(msgspec.json.encode(records)))
        single = [json_door.for_body(decoder.decode(msgspec.json.encode(r)))[0]
                  for r in records[:50]]
        answers[off] = np.array([a.probabilities.p1 for a in batch + single])
    on, off = answers.values()
    np.testing.assert_allclose(on, off, rtol=0, atol=1e-6)


def test_an_unknown_speed_mechanism_is_a_config_error():
    with pytest.raises(ConfigError, match="SPEEDUPS_OFF names tree_cod; choose from"):
        Settings.from_env({"SPEEDUPS_OFF": "tree_cod"})
