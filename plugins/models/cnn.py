"""The classic Fashion-MNIST convolutional network, with as many conv blocks as needed."""

import keras

from framework.registry import register


@register.model
def cnn(info, filters=64, kernel_size=3, dense_units=128, dropout=0.0, padding="valid",
        batch_norm=False, blocks=2, convs_per_block=1, block_dropout=0.0):
    """[Conv(filters) x convs_per_block -> MaxPool -> Dropout(block_dropout)] per block
    -> Dense(dense_units) -> Dropout(dropout) -> logits.

    filters: one int (`blocks` blocks of that width; two: the classic lesson's network) or
      one int per block, e.g. (32, 64, 64) for larger images.
    blocks: how many blocks an int `filters` makes (a search can vary the depth with it;
      three is the most that 28x28 images take with 'valid' padding).
    dense_units: 0 leaves the Dense layer out (the logits read the conv features directly;
      as a multi-head trunk, each head then reads them with its own weights).
    padding: the convolutions' ('valid' or 'same').
    batch_norm: normalise each convolution's output before its ReLU (trains much faster on
      inputs that are not centred, such as dark text on a light background).
    convs_per_block, block_dropout: the VGG-style stack of gin/cnn_best.gin.
    """
    widths = (filters,) * blocks if isinstance(filters, int) else tuple(filters)
    layers = [keras.Input(info.input_shape)]
    for width in widths:
        for _ in range(convs_per_block):
            if batch_norm:
                layers += [keras.layers.Conv2D(width, kernel_size, padding=padding,
                                               use_bias=False),
                           keras.layers.BatchNormalization(), keras.layers.ReLU()]
            else:
                layers.append(keras.layers.Conv2D(width, kernel_size, activation="relu",
                                                  padding=padding))
        layers.append(keras.layers.MaxPooling2D(2))
        if block_dropout:
            layers.append(keras.layers.Dropout(block_dropout))
    layers.append(keras.layers.Flatten())
    if dense_units:
        layers.append(keras.layers.Dense(dense_units, activation="relu"))
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(info.num_outputs, name="logits"))
    return keras.Sequential(layers, name="cnn")
