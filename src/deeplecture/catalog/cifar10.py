"""CIFAR-10: the lecture's progression, four networks climbing 74 -> 79 -> 84 -> 88 %."""

from deeplecture.catalog.entries import Dataset, Variant

CIFAR10 = Dataset(
    name="cifar10",
    title="CIFAR-10",
    class_names=(
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
    image_shape=(32, 32, 3),
    raw="archive",
    validation="fraction",
    run_command="dvc repro",
    evaluate_target="evaluate@{variant}",
    variants=(
        Variant("cnn74", "build_cnn74", 1_639_914),
        Variant("cnn79", "build_cnn79", 1_640_182),
        Variant("cnn84", "build_cnn84", 300_214),
        Variant("cnn88", "build_cnn88", 300_214),
    ),
    pinned={
        # The canonical archive: plain bytes (the "python" one holds pickles, never loaded).
        "cifar-10-binary.tar.gz": "md5:c32a1d4ab5d03f1284b67883e8d87530",
        "cifar-10-python.tar.gz": "md5:c58f30108f718f92721af3b95e74349a",
        # A public JPEG re-encoding (lossy; an override, never the default source).
        "cifar10-jpeg.tar.gz": (
            "sha256:477d854b471e3cc9fffac595e94a7fd4add79fcc23ed3b6dd9c539733ef7e001"
        ),
        # The sample shipped in data/sample/ (see its README), the smoke profile's default source.
        "cifar10-sample.tar.gz": (
            "sha256:cfcd49c7d2d8bb4d271a55967792676f1f2d4ca77ccf4ce75ebca609dec04aca"
        ),
    },
    # The JPEG re-encoding and the bundled sample are not the lecture's data: the report says so.
    source_kinds={
        "cifar-10-binary.tar.gz": "canonical CIFAR-10 (binary)",
        "cifar10-jpeg.tar.gz": "CIFAR-10 re-encoded as JPEG (lossy)",
        "cifar10-sample.tar.gz": "bundled CIFAR-10 sample",
    },
    together_stage="together@{variant}",
    together_outputs="models/sweeps/cifar10/{variant}",
)
