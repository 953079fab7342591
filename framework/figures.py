"""Pictures for TensorBoard, rendered to RGBA arrays without a display (matplotlib's Agg).

Each function returns uint8 arrays ready for `tf.summary.image` ([height, width, channels]).
"""

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position
import numpy as np  # noqa: E402  pylint: disable=wrong-import-position


def _rendered(figure) -> np.ndarray:
    figure.canvas.draw()
    image = np.asarray(figure.canvas.buffer_rgba()).copy()
    plt.close(figure)
    return image


def prediction_grid(images: np.ndarray, predicted: list[str], truth: list[str],
                    confidence: np.ndarray, right: np.ndarray) -> np.ndarray:
    """A grid of images titled 'prediction confidence% (truth)'; wrong ones in red.

    images: [n, height, width, channels] in [0, 1] (1 or 3 channels).
    """
    count = len(images)
    columns = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), dpi=72,
                                squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= count:
            continue
        image = np.clip(images[index], 0.0, 1.0)
        axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray",
                    vmin=0.0, vmax=1.0)
        mark = "" if right[index] else "✗ "
        axis.set_title(f"{mark}{predicted[index]} {100 * confidence[index]:.0f}%\n"
                       f"({truth[index]})", fontsize=9,
                       color="tab:blue" if right[index] else "tab:red")
    figure.tight_layout()
    return _rendered(figure)


def confusion_matrix_image(matrix: np.ndarray, class_names: list[str], title: str) -> np.ndarray:
    """The matrix (rows: true class, columns: predicted), each row normalised, with counts."""
    count = len(class_names)
    size = max(4.0, 0.45 * count + 2.0)
    figure, axis = plt.subplots(figsize=(size, size), dpi=72)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros_like(matrix, dtype=float), where=totals > 0)
    axis.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    axis.set_xticks(range(count), class_names, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(count), class_names, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    if count <= 20:
        for row in range(count):
            for column in range(count):
                axis.text(column, row, int(matrix[row, column]), ha="center", va="center",
                          fontsize=7, color="white" if shares[row, column] > 0.5 else "black")
    figure.tight_layout()
    return _rendered(figure)


def activation_grid(maps: np.ndarray, columns: int = 4, gap: int = 1) -> np.ndarray:
    """One example's feature maps [height, width, filters] tiled into one grey image, each
    map scaled to [0, 255] on its own (a constant map is black)."""
    height, width, filters = maps.shape
    rows = int(np.ceil(filters / columns))
    grid = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap), 255, np.uint8)
    for index in range(filters):
        channel = maps[..., index]
        spread = channel.max() - channel.min()
        scaled = (channel - channel.min()) / spread if spread > 0 else np.zeros_like(channel)
        row, column = divmod(index, columns)
        grid[row * (height + gap):row * (height + gap) + height,
             column * (width + gap):column * (width + gap) + width] = \
            (255 * scaled).astype(np.uint8)
    return grid[..., np.newaxis]
