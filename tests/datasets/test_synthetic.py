import numpy as np

from medprivbench.datasets.synthetic import generate_images, load_synthetic


def test_deterministic_from_seed():
    a, la = generate_images(64, seed=3)
    b, lb = generate_images(64, seed=3)
    c, _ = generate_images(64, seed=4)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)


def test_shapes_ranges_and_balance():
    ds = load_synthetic(n_train=400, n_val=50, n_test=100, seed=0)
    assert ds.train_x.shape == (400, 1, 28, 28) and ds.train_x.dtype == np.float32
    assert 0.0 <= ds.train_x.min() and ds.train_x.max() <= 1.0
    assert ds.train_y.dtype == np.int64 and set(np.unique(ds.train_y)) == {0, 1}
    assert 0.35 < ds.train_y.mean() < 0.65
    assert ds.info.real_patient_data is False and ds.info.class_names == ("benign", "malignant")


def test_splits_are_disjoint_draws():
    ds = load_synthetic(n_train=200, n_val=50, n_test=100, seed=0)
    train = {row.tobytes() for row in ds.train_x.reshape(200, -1)}
    assert not any(row.tobytes() in train for row in ds.test_x.reshape(100, -1))


def test_label_is_not_a_function_of_mean_brightness():
    # "not trivially separable": the mean intensity alone must not predict the label well.
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    ds = load_synthetic(n_train=2000, n_val=10, n_test=1000, seed=1)
    f_train = ds.train_x.reshape(len(ds.train_x), -1).mean(1, keepdims=True)
    f_test = ds.test_x.reshape(len(ds.test_x), -1).mean(1, keepdims=True)
    clf = LogisticRegression().fit(f_train, ds.train_y)
    assert roc_auc_score(ds.test_y, clf.predict_proba(f_test)[:, 1]) < 0.75


def test_long_tail_is_tagged_and_leaves_the_common_images_alone():
    from medprivbench.datasets.synthetic import RARE, generate_split

    plain, plain_y, none = generate_split(2000, seed=3)
    tailed, tailed_y, rare = generate_split(2000, seed=3, rare_fraction=0.1)
    assert not none.any() and 0.07 < rare.mean() < 0.13
    # the tail draws from its own generator: every common image and label is unchanged
    assert np.array_equal(plain[~rare], tailed[~rare]) and np.array_equal(plain_y[~rare], tailed_y[~rare])
    assert not np.array_equal(plain[rare], tailed[rare])
    ds = load_synthetic(n_train=500, n_val=10, n_test=10, seed=0, rare_fraction=0.2)
    assert 0.1 < np.mean(ds.train_groups == RARE) < 0.3
