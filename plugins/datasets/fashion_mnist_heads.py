"""Fashion-MNIST with two heads: the 10 kinds of clothing and a coarse 3-way label."""

import tensorflow as tf

from framework.data import Dataset, DatasetInfo, HeadInfo
from framework.errors import UserError
from framework.registry import register
from plugins.datasets import idx

COARSE_CLASSES = ("tops", "footwear", "other")
# T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot.
COARSE_OF_FINE = (0, 2, 0, 2, 0, 1, 0, 1, 2, 1)


@register.dataset
def fashion_mnist_heads(data_dir=None, heads=("fine", "coarse"), train_part=(0, 1)):
    """Fashion-MNIST labelled {'fine': 0-9, 'coarse': 0-2} (tops / footwear / other).

    heads: which of the two heads this dataset labels (alternating training gives each
      dataset one).
    train_part: (k, n): only the k-th of n disjoint parts of the training images, so that
      datasets in one alternating run see different images.
    """
    infos = {"fine": HeadInfo("fine", "classification", 10, idx.FASHION_MNIST_CLASSES),
             "coarse": HeadInfo("coarse", "classification", 3, COARSE_CLASSES)}
    unknown = set(heads) - set(infos)
    if not heads or unknown:
        raise UserError(f"fashion_mnist_heads.heads must name some of fine, coarse; got "
                        f"{list(heads)!r}.")
    part, parts = train_part
    if not 0 <= part < parts:
        raise UserError(f"fashion_mnist_heads.train_part must be (k, n) with 0 <= k < n, got "
                        f"{tuple(train_part)!r}.")
    # Unset, fashion_mnist's own data_dir binding (or search) applies.
    plain = idx.fashion_mnist(**({"data_dir": data_dir} if data_dir else {}))
    coarse_of_fine = tf.constant(COARSE_OF_FINE, tf.int64)

    def labelled(examples):
        return examples.map(
            lambda image, fine: (image, {name: fine if name == "fine"
                                         else tf.gather(coarse_of_fine, fine)
                                         for name in heads}),
            num_parallel_calls=tf.data.AUTOTUNE)

    train = plain.train.shard(parts, part)
    info = DatasetInfo.multi_head(
        "fashion_mnist_heads", plain.info.input_shape, [infos[name] for name in heads],
        train_size=int(train.cardinality()), eval_size=plain.info.eval_size)
    return Dataset(train=labelled(train), eval=labelled(plain.eval), info=info,
                   decode=plain.decode)
