"""Pictures for TensorBoard, rendered to RGBA arrays without a display (matplotlib's Agg).

Each function returns a uint8 array ready for `tf.summary.image` ([height, width, 4]).
TensorBoard shrinks an image to its card's width, so what matters for reading them there
is text that is large next to the image: every figure is drawn at DPI pixels per inch,
at least MIN_WIDTH pixels wide, with text of TEXT points or more.
"""

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position
import numpy as np  # noqa: E402  pylint: disable=wrong-import-position

DPI = 100
MIN_WIDTH = 800  # pixels, of the confusion matrix and the prediction grid
TEXT = 13  # points: about 18 pixels at DPI
ACTIVATION_TILE = 1.4  # inches per feature map: 140 pixels, however small the map
CHARACTER = 0.62  # a character's width, in text heights (DejaVu Sans, on average and up)
NAME_LENGTH = 12  # class names longer than this are cut, so that axis labels stay legible


def _rendered(figure) -> np.ndarray:
    figure.canvas.draw()
    image = np.asarray(figure.canvas.buffer_rgba()).copy()
    plt.close(figure)
    return image


def short_name(name: str, length: int = NAME_LENGTH) -> str:
    """`name`, cut to `length` characters with an ellipsis when longer."""
    return name if len(name) <= length else name[:length - 1] + "…"


def prediction_grid(images: np.ndarray, captions: list[str], right: np.ndarray) -> np.ndarray:
    """The images with their captions (framework.eval_images writes them: 'prediction
    confidence% (truth)', one line per head for several heads); wrong ones in red.

    Captions short enough to fit above a tile of a square grid MIN_WIDTH wide go there;
    longer ones (several heads) beside each image, in two columns as wide as they need.
    images: [n, height, width, channels] in [0, 1] (1 or 3 channels).
    """
    count = len(images)
    lines = [caption.split("\n") for caption in captions]
    text_width = max(len(line) for caption in lines for line in caption) * CHARACTER * TEXT / 72
    columns = int(np.ceil(np.sqrt(count)))
    beside = text_width > MIN_WIDTH / DPI / columns
    if beside:
        columns = min(2, count)
    rows = int(np.ceil(count / columns))
    text_height = max(map(len, lines)) * 1.4 * TEXT / 72
    if beside:
        tile = max(1.3, text_height)
        figure, axes = plt.subplots(
            rows, 2 * columns, squeeze=False, dpi=DPI, layout="constrained",
            figsize=(columns * (tile + text_width + 0.3), rows * (tile + 0.15)),
            gridspec_kw={"width_ratios": [tile, text_width + 0.2] * columns})
        image_axes, text_axes = list(axes[:, 0::2].flat), list(axes[:, 1::2].flat)
    else:
        tile = MIN_WIDTH / DPI / columns
        figure, axes = plt.subplots(rows, columns, squeeze=False, dpi=DPI, layout="constrained",
                                    figsize=(tile * columns, rows * (tile + text_height)))
        image_axes = text_axes = list(axes.flat)
    for index, (axis, text_axis) in enumerate(zip(image_axes, text_axes)):
        axis.axis("off")
        text_axis.axis("off")
        if index >= count:
            continue
        image = np.clip(images[index], 0.0, 1.0)
        axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray",
                    vmin=0.0, vmax=1.0)
        color = "tab:blue" if right[index] else "tab:red"
        if beside:
            text_axis.text(0.0, 0.5, captions[index], fontsize=TEXT, color=color,
                           va="center", ha="left", transform=text_axis.transAxes)
        else:
            axis.set_title(captions[index], fontsize=TEXT, color=color)
    return _rendered(figure)


def confusion_matrix_image(matrix: np.ndarray, class_names: list[str], title: str) -> np.ndarray:
    """The matrix (rows: true class, columns: predicted), each row normalised, with counts
    in the cells (up to 20 classes)."""
    count = len(class_names)
    names = [short_name(str(name)) for name in class_names]
    size = max(MIN_WIDTH / DPI, 0.6 * count + 3.0)
    figure, axis = plt.subplots(figsize=(size, size), dpi=DPI, layout="constrained")
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros_like(matrix, dtype=float), where=totals > 0)
    axis.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    axis.set_xticks(range(count), names, rotation=45, ha="right", fontsize=TEXT)
    axis.set_yticks(range(count), names, fontsize=TEXT)
    axis.set_xlabel("predicted", fontsize=TEXT + 1)
    axis.set_ylabel("true", fontsize=TEXT + 1)
    axis.set_title(title, fontsize=TEXT + 3)
    if count <= 20:
        for row in range(count):
            for column in range(count):
                axis.text(column, row, int(matrix[row, column]), ha="center", va="center",
                          fontsize=TEXT if count <= 12 else TEXT - 3,
                          color="white" if shares[row, column] > 0.5 else "black")
    return _rendered(figure)


def activation_figure(example: np.ndarray, maps: np.ndarray, title: str,
                      columns: int = 3) -> np.ndarray:
    """One example and its feature maps, each in a labelled tile of ACTIVATION_TILE inches
    (nearest-neighbour, so small maps show their pixels), each map coloured on its own
    scale (a constant map is one colour).

    example: [height, width, channels] in [0, 1]; maps: [height, width, filters].
    """
    tiles = 1 + maps.shape[-1]
    rows = int(np.ceil(tiles / columns))
    figure, axes = plt.subplots(rows, columns, squeeze=False, dpi=DPI, layout="constrained",
                                figsize=(columns * ACTIVATION_TILE,
                                         rows * (ACTIVATION_TILE + 0.25) + 0.4))
    figure.suptitle(title, fontsize=TEXT + 1)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index == 0:
            image = np.clip(example, 0.0, 1.0)
            axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray",
                        vmin=0.0, vmax=1.0, interpolation="nearest")
            axis.set_title("input", fontsize=TEXT - 1)
        elif index < tiles:
            axis.imshow(maps[..., index - 1], cmap="viridis", interpolation="nearest")
            axis.set_title(f"filter {index - 1}", fontsize=TEXT - 1)
    return _rendered(figure)
