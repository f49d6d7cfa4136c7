"""Fashion-MNIST: the lecture's one CNN (92 %), a pipeline of its own (fashion_mnist/dvc.yaml)."""

from deeplecture.catalog.entries import Dataset, Variant

FASHION_MNIST = Dataset(
    name="fashion_mnist",
    title="Fashion-MNIST",
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    image_shape=(28, 28, 1),
    raw="files",
    validation="count",
    run_command="dvc repro fashion_mnist/dvc.yaml",
    evaluate_target="fashion_mnist/dvc.yaml:evaluate",
    variants=(Variant("fashion", "build_fashion", 412_778),),
    # The four gzip'd IDX files, each fetched as <base>/<file name>.
    files={
        "train_images": "train-images-idx3-ubyte.gz",
        "train_labels": "train-labels-idx1-ubyte.gz",
        "test_images": "t10k-images-idx3-ubyte.gz",
        "test_labels": "t10k-labels-idx1-ubyte.gz",
    },
    pinned={
        "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
    },
    source_kinds={
        "fashion-mnist.s3-website.eu-central-1.amazonaws.com": "canonical Fashion-MNIST",
    },
)
