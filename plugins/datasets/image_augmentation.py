"""Random flips, rotations, zooms and contrast changes from stateless random ops.

Every draw comes from the `seed` it is given, so an augmented pipeline stays a function of
(seed, epoch, example) and a resumed run sees the same images (Keras's random layers keep
their own generator state, which tf.data cannot checkpoint).
"""

import math

import tensorflow as tf


def augmenter(flip=False, rotation=0.0, zoom=0.0, contrast=0.0, shift=0.0):
    """An `augment(image, label, seed)` for `Dataset.augment`, or None when all are off.

    flip: random left-right flips. rotation: up to this fraction of a full turn either way.
    zoom: scale by up to 1 +/- zoom. contrast: scale contrast by up to 1 +/- contrast.
    shift: move by up to this fraction of the width and height either way.
    Images are float [height, width, channels] in [0, 1].
    """
    if not (flip or rotation or zoom or contrast or shift):
        return None

    def augment(image, label, seed):
        seeds = tf.random.experimental.stateless_split(seed, 5)
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seeds[0])
        if rotation or zoom or shift:
            angle = tf.random.stateless_uniform(
                [], seeds[1], -rotation * 2 * math.pi, rotation * 2 * math.pi)
            scale = tf.random.stateless_uniform([], seeds[2], 1.0 - zoom, 1.0 + zoom)
            offset = tf.random.stateless_uniform([2], seeds[4], -shift, shift)
            image = _transform(image, angle, scale, offset)
        if contrast:
            image = tf.image.stateless_random_contrast(
                image, 1.0 - contrast, 1.0 + contrast, seeds[3])
        return tf.clip_by_value(image, 0.0, 1.0), label

    return augment


def _transform(image, angle, scale, offset):
    """Rotates by `angle` and scales by `scale` about the centre, then moves by `offset`
    (fractions of the height and width), reflecting at the edges."""
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    move_x, move_y = offset[1] * width, offset[0] * height
    # Maps each output pixel to the input pixel it samples (ImageProjectiveTransformV3).
    transform = tf.stack([cos, -sin, centre_x - cos * centre_x + sin * centre_y - move_x,
                          sin, cos, centre_y - sin * centre_x - cos * centre_y - move_y,
                          0.0, 0.0])
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis], transforms=transform[tf.newaxis],
        output_shape=tf.shape(image)[:2], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT")[0]
